"""Reading a user's JSONL text: UTF-8 whose bad bytes name their line, lines split on newlines only, text cells
checked for lone surrogates. The prompt-file and reference-bank readers share these and word their own errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class TextFileError(ValueError):
    """Why a user's text file cannot be read, and the 1-based line where that shows.

    Attributes:
        reason: What is wrong, in a few words.
        line: The line.
    """

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a leading byte-order mark dropped: editors on Windows prepend one).

    Raises:
        TextFileError: bytes that are not UTF-8, with their line.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TextFileError(f"not UTF-8 text ({error.reason} at byte {error.start})", line) from None


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for each non-blank line. Split on "\\n" only: str.splitlines would also break
    inside JSON strings holding U+2028 and similar."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line


def lone_surrogate(value: str) -> str | None:
    """Where `value` holds a lone surrogate ("U+D800 at character 4"), else None. JSON's "\\ud800" escape reads
    into Python, but it is not text: writing the row out as UTF-8 would fail, rounds later and far from its line."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"U+{ord(value[error.start]):04X} at character {error.start}"
    return None
