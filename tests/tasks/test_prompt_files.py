"""Unit tests for tasks.prompt_files: reading prompt files of each format, and their errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest

import tasks.prompt_files as prompt_files
from tasks.prompt_files import PromptFileError, load_prompt_file, shared_reads


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


# --- valid files -------------------------------------------------------------------------------


def test_jsonl_with_and_without_answers(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "train.jsonl", [{"prompt": "2+2?", "answer": 4}, {"prompt": "Say hi", "extra": 1}])
    assert load_prompt_file(path) == [
        {"id": "train-0", "prompt": "2+2?", "answer": "4"},
        {"id": "train-1", "prompt": "Say hi", "answer": None},
    ]


def test_solution_kind_and_problem_columns_are_kept_other_columns_dropped(tmp_path: Path) -> None:
    rows = [{"prompt": "2+3?", "answer": 5, "solution": " 2 + 3 = 5.", "kind": "sums", "problem": 7, "numbers": [2]}]
    assert load_prompt_file(jsonl(tmp_path / "a.jsonl", rows + [{"prompt": "b", "kind": ""}])) == [
        {"id": "a-0", "prompt": "2+3?", "answer": "5", "solution": " 2 + 3 = 5.", "kind": "sums", "problem": "7"},
        {"id": "a-1", "prompt": "b", "answer": None},  # an empty kind is no kind
    ]
    csv = write(tmp_path / "b.csv", "prompt,answer,kind\n2+3?,5,sums\n")
    assert load_prompt_file(csv) == [{"id": "b-0", "prompt": "2+3?", "answer": "5", "kind": "sums"}]


def test_jsonl_id_column_blank_lines_and_dot_json(tmp_path: Path) -> None:
    path = write(tmp_path / "set.json", '{"id": 7, "prompt": "a", "answer": "x"}\n\n{"id": "b", "prompt": "b"}\n')
    assert load_prompt_file(path) == [
        {"id": "7", "prompt": "a", "answer": "x"},
        {"id": "b", "prompt": "b", "answer": None},
    ]


def test_jsonl_answer_values_normalised(tmp_path: Path) -> None:
    rows = [
        {"prompt": "a", "answer": None},
        {"prompt": "b", "answer": ""},
        {"prompt": "c", "answer": 12.0},
        {"prompt": "d", "answer": 2.5},
        {"prompt": "e", "answer": "012"},
    ]
    answers = [r["answer"] for r in load_prompt_file(jsonl(tmp_path / "a.jsonl", rows))]
    assert answers == [None, None, "12", "2.5", "012"]


def test_jsonl_nan_answer_is_none(tmp_path: Path) -> None:
    path = write(tmp_path / "n.jsonl", '{"prompt": "a", "answer": NaN}\n')
    assert load_prompt_file(path)[0]["answer"] is None


def test_csv_reads_cells_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'id,prompt,answer\n1,"Say, hi",\n2,12,012\n3,x,NA\n')
    assert load_prompt_file(path) == [
        {"id": "1", "prompt": "Say, hi", "answer": None},
        {"id": "2", "prompt": "12", "answer": "012"},
        {"id": "3", "prompt": "x", "answer": "NA"},
    ]


def test_csv_without_answer_column(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", "prompt\nfirst\nsecond\n")
    assert load_prompt_file(path) == [
        {"id": "q-0", "prompt": "first", "answer": None},
        {"id": "q-1", "prompt": "second", "answer": None},
    ]


def test_parquet_with_gaps_in_an_integer_answer_column(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    # pandas stores [4, None] as float64; the loader must still give "4", not "4.0".
    pd.DataFrame({"prompt": ["2+2?", "open"], "answer": [4, None]}).to_parquet(path)
    assert load_prompt_file(path) == [
        {"id": "p-0", "prompt": "2+2?", "answer": "4"},
        {"id": "p-1", "prompt": "open", "answer": None},
    ]


def test_parquet_id_column(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pd.DataFrame({"id": [10, 11], "prompt": ["a", "b"], "answer": ["x", "y"]}).to_parquet(path)
    assert [r["id"] for r in load_prompt_file(path)] == ["10", "11"]


def test_reading_leaves_nothing_in_the_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    load_prompt_file(write(tmp_path / "q.csv", "prompt\na\n"))
    pd.DataFrame({"prompt": ["a"]}).to_parquet(tmp_path / "p.parquet")
    load_prompt_file(tmp_path / "p.parquet")
    assert not cache.exists() or not any(cache.iterdir())


# --- errors ------------------------------------------------------------------------------------


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files `load_prompt_file` reads from disk, by name, from here on."""
    reads: list[str] = []
    read_rows = prompt_files._read_rows

    def counted(path: Path) -> tuple[list[tuple[int, object]], str]:
        reads.append(path.name)
        return read_rows(path)

    monkeypatch.setattr(prompt_files, "_read_rows", counted)
    return reads


def test_shared_reads_read_a_file_once_and_hand_out_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jsonl(tmp_path / "train.jsonl", [{"id": "a", "prompt": "p", "answer": 1}, {"prompt": "q"}])
    reads = counted_reads(monkeypatch)
    with shared_reads():
        first = load_prompt_file(path)
        first[0]["prompt"] = "changed by a caller"
        second = load_prompt_file(str(path))
        with shared_reads():  # a block inside another shares its reads
            third = load_prompt_file(path)
    assert reads == ["train.jsonl"]
    assert second == third == load_prompt_file(path)
    assert second[0]["prompt"] == "p"
    assert reads == ["train.jsonl"] * 2  # outside the block every call reads


def test_shared_reads_read_a_changed_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jsonl(tmp_path / "train.jsonl", [{"prompt": "p", "answer": 1}])
    reads = counted_reads(monkeypatch)
    with shared_reads():
        assert load_prompt_file(path)[0]["answer"] == "1"
        jsonl(path, [{"prompt": "p", "answer": 12}])
        assert load_prompt_file(path)[0]["answer"] == "12"
        # A scored read checks the answers itself: a row without one is still refused.
        jsonl(path, [{"prompt": "p", "answer": 12}, {"prompt": "q", "answer": None}])
        load_prompt_file(path)
        with pytest.raises(PromptFileError, match=r"line 2: no .answer."):
            load_prompt_file(path, require_answer=True)
    assert reads == ["train.jsonl"] * 4


def test_shared_reads_raise_as_outside(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"prompt": "a"}\n{"prompt": "c" "answer": 1}\n')
    with shared_reads():
        for _ in range(2):
            with pytest.raises(PromptFileError, match=r"line 2: not valid JSON"):
                load_prompt_file(path)
        with pytest.raises(PromptFileError, match=r"file not found"):
            load_prompt_file(tmp_path / "missing.jsonl")


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c" "answer": 1}\n')
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line 3: not valid JSON (Expecting ',' delimiter)"
    assert caught.value.line == 3


def test_jsonl_row_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"prompt": "a"}\n["b"]\n')
    with pytest.raises(PromptFileError, match=r"t\.jsonl, line 2: expected an object, got array"):
        load_prompt_file(path)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"answer": 1}, "no 'prompt'"),
        ({"prompt": None}, "no 'prompt'"),
        ({"prompt": "   "}, "empty 'prompt'"),
        ({"prompt": 5}, "'prompt' must be a string, got number"),
        ({"prompt": "a", "answer": [1]}, "'answer' must be a single value, got array"),
        # "True" and "inf" would match no model's answer
        ({"prompt": "a", "answer": True}, "'answer' must be text or a number, got boolean"),
        ({"prompt": "a", "answer": False}, "'answer' must be text or a number, got boolean"),
        ({"prompt": "a", "answer": float("inf")}, "'answer' must be a finite number, got Infinity"),
        ({"prompt": "a", "answer": float("-inf")}, "'answer' must be a finite number, got -Infinity"),
        ({"id": True, "prompt": "a"}, "'id' must be text or a number, got boolean"),
    ],
)
def test_bad_jsonl_row_names_the_line(tmp_path: Path, row: dict[str, object], reason: str) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"prompt": "ok"}, row])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line 2: {reason}"


def test_numbers_and_text_answers_are_still_accepted(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "answer": 0}, {"prompt": "b", "answer": -2.5}, {"prompt": "c", "answer": "true"}]
    assert [r["answer"] for r in load_prompt_file(jsonl(tmp_path / "a.jsonl", rows))] == ["0", "-2.5", "true"]


def test_parquet_boolean_answer_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "answer": [True, False]}).to_parquet(path)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, row 1: 'answer' must be text or a number, got boolean"


def test_jsonl_key_given_twice_names_key_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"id": "b", "prompt": "ok"}\n{"id": "c", "prompt": "What is 1+1?", "answer": "2", "prompt": "other"}\n',
    )
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line 2: duplicate key 'prompt'"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.json", '[\n  {"prompt": "What is 1+1?", "answer": "2"},\n  {"prompt": "b", "answer": "3"}\n]\n'),
        ("a.jsonl", '[{"prompt": "What is 1+1?", "answer": "2"}, {"prompt": "b", "answer": 3}]\n'),
        ("a.json", '\n  [ {"prompt": "What is 1+1?",\n "answer": "2"} ,\n\n{"prompt": "b", "answer": "3"}]'),
    ],
)
def test_one_json_array_of_rows_reads_as_its_rows(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    records = load_prompt_file(path, require_answer=True)
    stem = path.stem
    assert records == [
        {"id": f"{stem}-0", "prompt": "What is 1+1?", "answer": "2"},
        {"id": f"{stem}-1", "prompt": "b", "answer": "3"},
    ]


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ('[\n  {"prompt": "a", "answer": "2"},\n  {"prompt": "", "answer": "3"}\n]\n', "empty 'prompt'", 3),
        ('[\n  {"prompt": "a", "answer": "2"}\n  {"prompt": "b"}\n]\n', "not valid JSON in the array", 3),
        ('[\n  {"prompt": "a", "answer": "2"},\n  {"prompt": "b",\n "answer": }\n]\n', "not valid JSON", 4),
        ('[\n  {"prompt": "a"},\n  {"prompt": "b", "prompt": "c"}\n]\n', "duplicate key 'prompt'", 3),
        ('[\n  {"prompt": "a", "answer": "2"},\n  "b"\n]\n', "expected an object, got string", 3),
        ('[\n  {"prompt": "a", "answer": "2"},\n  {"prompt": "b"},\n]\n', "a ',' before the array's closing ']'", 3),
        ('[\n  {"prompt": "a", "answer": "2"},\n  {"prompt": "b"}\n', "the JSON array is not closed", 4),
        ('[\n  {"id": "x", "prompt": "a"},\n  {"id": "x", "prompt": "b"}\n]', "duplicate id 'x' (first at line 2)", 3),
    ],
)
def test_a_bad_row_of_a_json_array_names_its_line(tmp_path: Path, text: str, reason: str, line: int) -> None:
    path = write(tmp_path / "a.json", text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value).startswith(f"{path}, line {line}: {reason}")
    assert (caught.value.line, caught.value.unit) == (line, "line")


def test_an_empty_json_array_has_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", "[\n]\n")
    with pytest.raises(PromptFileError, match=r"a\.json: no rows$"):
        load_prompt_file(path)


def test_json_array_rows_are_placed_at_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '[\n  {"id": "p", "prompt": "a"},\n  {"id": "q", "prompt": "b"}\n]\n')
    assert prompt_files.row_places(path) == {"p": (2, "line"), "q": (3, "line")}


@pytest.mark.parametrize("require_answer", [False, True])
def test_json_object_over_lines_is_not_json_lines(tmp_path: Path, require_answer: bool) -> None:
    path = write(tmp_path / "a.json", '{\n  "prompt": "What is 1+1?",\n  "answer": "2"\n}\n')
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path, require_answer=require_answer)
    assert str(caught.value) == (
        f"{path}: one JSON object over several lines, not JSON Lines (one object per line) or one JSON array of objects"
    )


def test_json_objects_back_to_back_over_lines_say_how_to_write_them(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '{\n  "prompt": "a"\n}\n{\n  "prompt": "b"\n}\n')
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}: 2 JSON objects over several lines each (as `jq .` writes them), not JSON Lines (one object per "
        "line) or one JSON array of objects: `jq -c` writes one a line"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[\n  {"prompt": "a"}\n]\n[\n  {"prompt": "b"}\n]\n', 4),  # two arrays, as `cat a.json b.json` joins them
        ('[\n  {"prompt": "a"}\n]\n]\n', 4),  # a stray bracket
    ],
)
def test_text_after_a_json_arrays_closing_bracket_names_its_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path / "a.json", text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line {line}: text after the JSON array's closing ']' (two arrays, or a stray ']'?)"
    )


def test_a_jsonl_row_that_is_an_array_still_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '["b"]\n{"prompt": "a"}\n')
    with pytest.raises(PromptFileError, match=r"t\.jsonl, line 1: expected an object, got array$"):
        load_prompt_file(path)


def test_empty_csv_prompt_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "prompt,answer\nfine,1\n,2\n")
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line 3: empty 'prompt'"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # blank and whitespace-only lines (pandas skips them) and a quoted cell over two lines before the bad row
        ('prompt,answer\n\nfine,1\n   \n"two\nlines",2\n\t\n,3\nlast,4\n', 8),
        ("prompt,answer\r\nfine,1\r\n\r\n,2\r\n", 4),
        ('prompt\nfine\n"   "\n', 3),  # a quoted blank is a row, not a blank line
    ],
)
def test_csv_error_names_the_line_an_editor_shows(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line {line}: empty 'prompt'"


def test_parquet_empty_prompt_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"prompt": ["a", "b", ""]}).to_parquet(path)
    with pytest.raises(PromptFileError, match=r"t\.parquet, row 3: empty 'prompt'$"):
        load_prompt_file(path)


def test_csv_without_prompt_column(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "question,answer\nwhat?,1\n")
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: no 'prompt' column (columns: question, answer)"


def test_parquet_without_prompt_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a"]}).to_parquet(path)
    with pytest.raises(PromptFileError, match=r"no 'prompt' column \(columns: text\)"):
        load_prompt_file(path)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("prompt,answer\nok,1\nWhat is 1+1?,2,extra\n", 3, "3 fields where the header has 2"),
        # pandas would count the rows of a quoted cell over several lines, and name line 5
        (
            'prompt,answer\nok,1\n"two\nlines",2\n"three\nmore\nlines",3\nbad,4,5\n',
            8,
            "3 fields where the header has 2",
        ),
        ("prompt,answer\nok,1\nok,2,\n", 3, "3 fields where the header has 2"),  # a trailing comma is a field
        # pandas would pad a short row, shifting its cells into the wrong columns
        ("id,prompt,answer\nWhat is 1+1?,2\n", 2, "2 fields where the header has 3"),
        ("id,prompt,answer\n1,a,b\n\n\nc\n", 5, "1 fields where the header has 3"),
        ("id,prompt,answer\r\n1,a,b\r\n\r\nc,d\r\n", 4, "2 fields where the header has 3"),
    ],
)
def test_csv_row_with_other_than_the_header_field_count_names_its_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], text: str, line: int, reason: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line {line}: {reason}"
    assert capfd.readouterr().err == ""  # one message, the error's


def test_csv_blank_lines_between_rows_are_still_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", "id,prompt,answer\n\n1,a,b\n   \n2,c,\n\n")
    assert load_prompt_file(path) == [
        {"id": "1", "prompt": "a", "answer": "b"},
        {"id": "2", "prompt": "c", "answer": None},
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('prompt,answer\nok,1\nfine,2\n"unclosed,3\nmore,4\n', 4),
        ('prompt,answer\r\n"two\r\nlines",1\r\nok,"open\r\n', 4),  # the quote opens in a row's second cell
        ('prompt,answer\n"two\nlines","open\nstill\n', 3),  # a row over two lines, then the open quote
        ('prompt,answer\nok,"open', 2),  # no newline at the end
    ],
)
def test_csv_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line {line}: unclosed quote (the quoted field opened here runs to the end of the file)"
    )


def test_csv_quote_closed_a_line_late_names_the_line_it_opened(tmp_path: Path) -> None:
    # Read on as a multi-line cell, line 3's open quote would make lines 3 and 4 one row, answer 6.
    text = 'prompt,answer\n"What is 1 + 1?",2\n"What is 2 + 2?,4\n"What is 3 + 3?",6\n'
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line 3: not valid CSV: a quoted field opened here runs to line 4, where a quote is followed by "
        "text, not a comma (is a closing quote missing?)"
    )
    path = write(tmp_path / "t.csv", 'prompt,answer\n"What is 1 + 1?" ,2\n')
    with pytest.raises(PromptFileError, match=r"t\.csv, line 2: not valid CSV \(.*: text after a closing quote\)$"):
        load_prompt_file(path)
    # Quotes inside a cell, doubled quotes and a quoted cell over two lines are CSV and read as before.
    path = write(tmp_path / "t.csv", 'prompt,answer\nHe said "hi",1\n"a ""b"" c",2\n"line one\nline two",3\n')
    assert [row["prompt"] for row in load_prompt_file(path)] == ['He said "hi"', 'a "b" c', "line one\nline two"]


def test_csv_cell_over_the_csv_field_limit_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", f"prompt\nok\n{'x' * 200_000}\n")
    with pytest.raises(PromptFileError, match=r"t\.csv, line 3: not valid CSV \(field larger than field limit"):
        load_prompt_file(path)


def test_datasets_does_not_log_the_error_the_prompt_file_error_gives(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.prompt_files import _load_with_datasets

    path = write(tmp_path / "t.csv", "prompt,answer\na,1\nb,2,3\n")  # past the field check, pandas refuses it
    with pytest.raises(PromptFileError, match=r"t\.csv: not valid CSV \(.*Expected 2 fields in line 3, saw 3"):
        _load_with_datasets(path, "csv")
    assert capfd.readouterr().err == ""
    assert not [record for record in caplog.records if record.name.startswith("datasets")]


def test_damaged_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", "not parquet")
    with pytest.raises(PromptFileError, match=r"t\.parquet: not a valid Parquet file \("):
        load_prompt_file(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: file not found"


def test_missing_relative_file_says_where_it_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file("configs/data/x.jsonl")
    assert str(caught.value) == (
        f"configs/data/x.jsonl: file not found (relative paths resolve against the working directory, {tmp_path})"
    )


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", "prompt\n")
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: unsupported file type '.txt' (use .jsonl, .json, .csv, .parquet)"


@pytest.mark.parametrize(
    ("text", "name"), [('prompt;answer\n"2, plus 2?";4\n', "';'"), ("prompt\tanswer\nq\t4\n", "tabs")]
)
def test_a_csv_separated_by_another_character_is_named_at_its_header(tmp_path: Path, text: str, name: str) -> None:
    # Read as one column, its quotes and commas failed far down the file, or its header lacked 'prompt'.
    path = write(tmp_path / "rows.csv", text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert (
        str(caught.value)
        == f"{path}, line 1: the header is separated by {name}, not commas: save the file as comma-separated CSV"
    )
    assert (
        load_prompt_file(write(tmp_path / "one.csv", "prompt\nWhat is 2; plus 2?\n"))[0]["prompt"]
        == "What is 2; plus 2?"
    )


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    for path in (tmp_path / "data", tmp_path / "rows.jsonl"):  # with no suffix, and with a file's
        path.mkdir()
        with pytest.raises(PromptFileError) as caught:
            load_prompt_file(path)
        assert str(caught.value) == f"{path}: a directory, not a file (name a .jsonl, .json, .csv, .parquet file in it)"


@pytest.mark.parametrize(("name", "text"), [("e.jsonl", ""), ("e.csv", ""), ("e.parquet", "")])
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: empty file"


@pytest.mark.parametrize(("name", "text"), [("b.jsonl", "\n\n"), ("h.csv", "prompt,answer\n")])
def test_file_without_rows(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(PromptFileError, match=r": no rows$"):
        load_prompt_file(path)


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "z.parquet"
    pd.DataFrame({"prompt": pd.Series([], dtype=str)}).to_parquet(path)
    with pytest.raises(PromptFileError, match=r": no rows$"):
        load_prompt_file(path)


def test_require_answer_names_the_row(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "heldout.jsonl", [{"prompt": "a", "answer": 1}, {"prompt": "b", "answer": None}])
    assert len(load_prompt_file(path)) == 2
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path, require_answer=True)
    assert str(caught.value) == f"{path}, line 2: no 'answer' (this file needs one on every row)"


def test_require_answer_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "prompt,answer\na,1\nb,\n")
    with pytest.raises(PromptFileError, match=r"h\.csv, line 3: no 'answer'"):
        load_prompt_file(path, require_answer=True)


def test_duplicate_id(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}])
    with pytest.raises(PromptFileError, match=r"d\.jsonl, line 2: duplicate id '1' \(first at line 1\)"):
        load_prompt_file(path)


def test_duplicate_of_a_default_id_says_it_was_given_by_default(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", [{"id": "x-1", "prompt": "a"}, {"prompt": "b"}])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line 2: duplicate id 'x-1' (first at line 1; this row has no 'id', so it got the default"
        " <file stem>-<row index>)"
    )
    path = jsonl(tmp_path / "x.jsonl", [{"prompt": "a"}, {"id": "x-0", "prompt": "b"}])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line 2: duplicate id 'x-0' (first at line 1, which has no 'id', so it got the default"
        " <file stem>-<row index>)"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(PromptFileError, match=r"l\.jsonl, line 2: not UTF-8 text"):
        load_prompt_file(path)
    table = tmp_path / "t.csv"
    table.write_bytes(b"prompt\nok\n\ncaf\xe9\n")
    with pytest.raises(PromptFileError, match=r"t\.csv, line 4: not UTF-8 text"):
        load_prompt_file(table)


def test_a_lone_surrogate_is_refused_at_its_line(tmp_path: Path) -> None:
    # JSON's "\ud800" escape reads into Python, but is not text: writing the row out would fail rounds later.
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt": "ok", "answer": "1"}\n{"prompt": "x", "answer": "2", "response": "bad \\ud800"}\n')
    with pytest.raises(PromptFileError, match=r"s\.jsonl, line 2: 'response' holds a lone surrogate \(U\+D800"):
        load_prompt_file(path)


def test_error_is_a_value_error_and_survives_pickling() -> None:
    error = PromptFileError("data/train.jsonl", "not valid JSON (Expecting ',' delimiter)", 7)
    assert isinstance(error, ValueError)
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == "data/train.jsonl, line 7: not valid JSON (Expecting ',' delimiter)"
    assert (restored.path, restored.line, restored.unit) == ("data/train.jsonl", 7, "line")


def test_relative_path_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("data")
    write(Path("data/train.csv"), "question\nx\n")
    with pytest.raises(PromptFileError, match=r"^data/train\.csv: no 'prompt' column"):
        load_prompt_file("data/train.csv")


def test_require_answer_without_an_answer_column_is_one_line(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "test.jsonl", [{"prompt": "a"}, {"prompt": "b", "Answer": 2}])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path, require_answer=True)
    assert (
        str(caught.value)
        == f"{path}: no 'answer' column (this file is scored against answers; columns: Answer, prompt)"
    )


def test_a_csv_header_with_spaces_after_its_commas_names_its_columns_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "id, prompt, answer , kind\nq1,What is 1+1?,2,add\n")
    assert load_prompt_file(path, require_answer=True) == [
        {"id": "q1", "prompt": "What is 1+1?", "answer": "2", "kind": "add"}
    ]


@pytest.mark.parametrize(
    ("text", "column"),
    [(",prompt,answer\n0,a,1\n", 1), ("prompt,answer,\na,1,\n", 3)],  # a pandas index; a trailing comma
)
def test_a_csv_column_without_a_name_is_named_by_its_place(tmp_path: Path, text: str, column: int) -> None:
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == (
        f"{path}, line 1: column {column} of the header has no name (an index pandas wrote without index=False, or a "
        "trailing comma?): name it or drop it"
    )


def test_row_places_give_each_ids_line_or_row(tmp_path: Path) -> None:
    # A message about a row found after reading (too long, an unreadable answer) names its place as a bad row's does.
    lines = jsonl(tmp_path / "a.jsonl", [{"id": "x", "prompt": "p"}, {"prompt": "q"}])
    lines.write_text("\n" + lines.read_text())  # a blank first line: the rows are on lines 2 and 3
    assert prompt_files.row_places(lines) == {"x": (2, "line"), "a-1": (3, "line")}
    csv_file = write(tmp_path / "b.csv", 'prompt,answer\n"two\nlines",4\nWhat is 3 + 3?,6\n')
    assert prompt_files.row_places(csv_file) == {"b-0": (2, "line"), "b-1": (4, "line")}
    pd.DataFrame({"prompt": ["p", "q"], "id": ["m", "n"]}).to_parquet(tmp_path / "c.parquet")
    assert prompt_files.row_places(tmp_path / "c.parquet") == {"m": (1, "row"), "n": (2, "row")}
    assert prompt_files.row_places(tmp_path / "gone.jsonl") == {}  # a file that cannot be read gives no places


def test_an_answer_with_spaces_around_it_is_kept_trimmed(tmp_path: Path) -> None:
    # A space after a CSV comma is common in a hand-written file: the label is what the user meant, trimmed (the
    # strict form is asked of the model's response, not of the label). A solution keeps its leading space.
    csv_file = write(tmp_path / "s.csv", "prompt,answer\nWhat is 2 + 2?, 4\nWhat is 3 + 3?,6\n")
    assert [r["answer"] for r in load_prompt_file(csv_file, require_answer=True)] == ["4", "6"]
    rows = [{"prompt": "a", "answer": " 21 ", "solution": " 10 + 11 = 21. The answer is 21."}, {"prompt": "b"}]
    assert load_prompt_file(jsonl(tmp_path / "s.jsonl", rows)) == [
        {"id": "s-0", "prompt": "a", "answer": "21", "solution": " 10 + 11 = 21. The answer is 21."},
        {"id": "s-1", "prompt": "b", "answer": None},
    ]


def test_a_csv_answer_written_as_an_integral_decimal_reads_as_the_integer(tmp_path: Path) -> None:
    # pandas writes an integer column with a gap as floats ("12.0"); a JSON 12.0 reads as "12" too.
    path = write(tmp_path / "t.csv", "prompt,answer\na,12.0\nb,\nc, -3.00\nd,2.5\ne,7.0x\n")
    assert [row["answer"] for row in load_prompt_file(path)] == ["12", None, "-3", "2.5", "7.0x"]
