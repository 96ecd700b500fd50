"""The shared reading of a user's JSONL text: bad bytes named by line, newline-only splitting, lone surrogates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.text_files import TextFileError, lone_surrogate, numbered_lines, read_text


def test_read_text_drops_a_byte_order_mark_and_names_the_line_of_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xef\xbb\xbfok\n")
    assert read_text(path) == "ok\n"
    path.write_bytes(b"ok\n\ncaf\xe9\n")
    with pytest.raises(TextFileError) as caught:
        read_text(path)
    assert (caught.value.line, caught.value.reason) == (3, "not UTF-8 text (invalid continuation byte at byte 7)")


def test_numbered_lines_skip_blanks_and_keep_line_separators_inside_strings() -> None:
    text = '{"a": "x\u2028y"}\n\n  \n{"b": 1}\n'
    assert list(numbered_lines(text)) == [(1, '{"a": "x\u2028y"}'), (4, '{"b": 1}')]


def test_lone_surrogate_says_where() -> None:
    assert lone_surrogate("plain") is None and lone_surrogate("café ✓") is None
    assert lone_surrogate("bad \ud800") == "U+D800 at character 4"
