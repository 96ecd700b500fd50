"""Unit tests for tasks.prompts: reading prompt files of each format, their errors, and seeded draws."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest

from configs.loader import load_config
from tasks.arithmetic import parse_problem, problem_split
from tasks.prompts import (
    PromptFileError,
    arithmetic_prompts,
    campaign_prompts,
    carved_for_validation,
    check_prompt_sources,
    draw,
    file_split,
    has_split,
    load_extra_sets,
    load_prompt_file,
)


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
    ],
)
def test_bad_jsonl_row_names_the_line(tmp_path: Path, row: dict[str, object], reason: str) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"prompt": "ok"}, row])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, line 2: {reason}"


def test_empty_csv_prompt_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "prompt,answer\nfine,1\n,2\n")
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}, row 2: empty 'prompt'"


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


def test_ragged_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "prompt,answer\na,1\nb,2,3\n")
    with pytest.raises(PromptFileError, match=r"t\.csv: not valid CSV \(.*Expected 2 fields in line 3, saw 3"):
        load_prompt_file(path)


def test_damaged_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", "not parquet")
    with pytest.raises(PromptFileError, match=r"t\.parquet: not a valid Parquet file \("):
        load_prompt_file(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: file not found"


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", "prompt\n")
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value) == f"{path}: unsupported file type '.txt' (use .jsonl, .json, .csv, .parquet)"


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
    with pytest.raises(PromptFileError, match=r"h\.csv, row 2: no 'answer'"):
        load_prompt_file(path, require_answer=True)


def test_duplicate_id(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}])
    with pytest.raises(PromptFileError, match=r"d\.jsonl, line 2: duplicate id '1' \(first at line 1\)"):
        load_prompt_file(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(PromptFileError, match=r"l\.jsonl: not UTF-8 text"):
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


# --- arithmetic and draws ----------------------------------------------------------------------


def test_require_answer_without_an_answer_column_is_one_line(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "test.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path, require_answer=True)
    assert str(caught.value) == f"{path}: no 'answer' column (this file is scored against answers)"


def test_arithmetic_prompts_shape_and_split() -> None:
    rows = arithmetic_prompts(5, split="validation", seed=3, min_operand=1, max_operand=9, operations=["add"])
    assert len(rows) == 5
    for row in rows:
        assert set(row) == {"id", "prompt", "answer", "solution"}
        assert row["id"].startswith("validation-")
        parsed = parse_problem(row["prompt"])
        assert parsed is not None and problem_split(*parsed[:3]) == "validation"
        assert row["solution"].endswith(f"The answer is {row['answer']}.")
    again = arithmetic_prompts(5, split="validation", seed=3, min_operand=1, max_operand=9, operations=["add"])
    assert again == rows


# --- campaign splits ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_builtin_campaign_splits_share_no_problem(seed: int) -> None:
    config = load_config("tiny", [f"seed={seed}"])
    problems = {}
    for split in ("train", "validation", "test"):
        rounds = [1, 2, 3] if split == "train" else [1]
        rows = [row for index in rounds for row in campaign_prompts(config, split, index)]
        parsed = [parse_problem(row["prompt"]) for row in rows]
        assert all(p is not None for p in parsed)
        problems[split] = {(op, min(a, b), max(a, b)) for op, a, b, _ in parsed}  # type: ignore[misc]
    assert problems["train"] and problems["validation"] and problems["test"]
    assert not problems["train"] & problems["validation"]
    assert not problems["train"] & problems["test"]
    assert not problems["validation"] & problems["test"]
    # the deprecated name the flows still use means validation
    assert campaign_prompts(config, "heldout", 1) == campaign_prompts(config, "validation", 1)


def test_ood_slice_has_new_phrasings_and_larger_operands() -> None:
    config = load_config("tiny")
    ood = campaign_prompts(config, "ood", 1)
    assert len(ood) == config.prompts.ood_size
    train_prompts = {row["prompt"] for index in (1, 2, 3) for row in campaign_prompts(config, "train", index)}
    for row in ood:
        op, a, b, reserved = parse_problem(row["prompt"])  # type: ignore[misc]
        assert reserved and row["prompt"] not in train_prompts
        assert config.prompts.max_operand < min(a, b) and max(a, b) <= 2 * config.prompts.max_operand
        assert int(row["answer"]) == (a + b if op == "add" else a - b)


def test_campaign_split_sizes_follow_the_config() -> None:
    config = load_config("tiny", ["prompts.validation_size=20", "prompts.test_size=30", "prompts.ood_size=10"])
    sizes = {split: len(campaign_prompts(config, split, 1)) for split in ("validation", "test", "ood")}
    assert sizes == {"validation": 20, "test": 30, "ood": 10}
    assert campaign_prompts(config, "test", 1) == campaign_prompts(config, "test", 5)  # fixed per campaign


def _file_config(tmp_path: Path, *extra: str) -> object:
    return load_config("tiny", ["prompts.source=file", f"prompts.train_path={tmp_path / 'train.jsonl'}", *extra])


def test_validation_is_carved_from_training_by_row_id_never_from_test(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"id": f"r{i}", "prompt": f"q{i}", "answer": i} for i in range(200)])
    jsonl(tmp_path / "test.jsonl", [{"id": f"t{i}", "prompt": f"t{i}", "answer": i} for i in range(10)])
    config = _file_config(tmp_path, f"prompts.test_path={tmp_path / 'test.jsonl'}", "prompts.validation_size=500")
    train = file_split(config.prompts, "train")  # type: ignore[attr-defined]
    validation = campaign_prompts(config, "validation", 1)  # type: ignore[arg-type]
    assert 20 <= len(validation) <= 60  # about a fifth of 200 rows
    assert {r["id"] for r in validation} == {
        f"r{i}" for i in range(200) if carved_for_validation({"id": f"r{i}", "answer": 1})
    }
    assert not {r["id"] for r in validation} & {r["id"] for r in train}
    assert len(train) + len(validation) == 200
    assert {r["id"] for r in campaign_prompts(config, "test", 1)} == {f"t{i}" for i in range(10)}  # type: ignore[arg-type]
    assert not has_split(config, "ood")  # type: ignore[arg-type]
    # a row with no answer is never carved out: validation is scored against answers
    assert not carved_for_validation({"id": "r3", "answer": None})


def test_no_test_file_means_no_test_split(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "answer": i} for i in range(10)])
    config = _file_config(tmp_path)
    assert not has_split(config, "test") and campaign_prompts(config, "test", 1) == []  # type: ignore[arg-type]


def test_overlap_with_training_is_refused_with_count_and_first_ids(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}"} for i in range(10)])
    jsonl(
        tmp_path / "val.jsonl",
        [{"id": f"v{i}", "prompt": f" q{i} ", "answer": 1} for i in range(3)]
        + [{"id": "new", "prompt": "z", "answer": 1}],
    )
    config = _file_config(tmp_path, f"prompts.validation_path={tmp_path / 'val.jsonl'}")
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"{tmp_path / 'val.jsonl'}: 3 validation prompt(s) also in the training prompts (first ids: 'v0', 'v1', "
        "'v2'); at most prompts.max_overlap=0 allowed"
    )
    allowed = _file_config(tmp_path, f"prompts.validation_path={tmp_path / 'val.jsonl'}", "prompts.max_overlap=3")
    notes = check_prompt_sources(allowed.prompts)  # type: ignore[attr-defined]
    assert len(notes) == 1 and "3 validation prompt(s)" in notes[0] and "max_overlap=3" in notes[0]


def test_test_file_without_answers_is_refused(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}"} for i in range(10)])
    jsonl(tmp_path / "test.jsonl", [{"prompt": "t1"}])
    config = _file_config(tmp_path, f"prompts.test_path={tmp_path / 'test.jsonl'}")
    with pytest.raises(PromptFileError, match=r"test\.jsonl: no 'answer' column"):
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]


def test_extra_sets_load_and_a_bad_one_names_file_line_and_set(tmp_path: Path) -> None:
    jsonl(tmp_path / "bench.jsonl", [{"prompt": "1+1?", "answer": 2}])
    write(tmp_path / "broken.jsonl", '{"prompt": "a", "answer": 1}\n{"prompt": "b", "answer": 2\n')
    good = load_config("tiny", [f"evaluate.extra_sets=[{{name: bench, path: {tmp_path / 'bench.jsonl'}}}]"])
    assert load_extra_sets(good) == {"bench": [{"id": "bench-0", "prompt": "1+1?", "answer": "2"}]}
    bad = load_config("tiny", [f"evaluate.extra_sets=[{{name: broken, path: {tmp_path / 'broken.jsonl'}}}]"])
    with pytest.raises(PromptFileError) as caught:
        load_extra_sets(bad)
    assert str(caught.value).startswith(f"{tmp_path / 'broken.jsonl'}, line 2: not valid JSON")
    assert str(caught.value).endswith("(evaluate.extra_sets 'broken')")


def test_draw_is_seeded_without_replacement_in_original_order() -> None:
    pool = [{"id": str(i)} for i in range(10)]
    first = draw(pool, 4, seed=1)
    assert first == draw(pool, 4, seed=1)
    ids = [int(r["id"]) for r in first]
    assert len(set(ids)) == 4 and ids == sorted(ids)
    assert draw(pool, 4, seed=1) != draw(pool, 4, seed=2)  # holds for these seeds; a check that seed matters


def test_draw_more_than_available_returns_all_as_copies() -> None:
    pool = [{"id": "a"}, {"id": "b"}]
    drawn = draw(pool, 5, seed=0)
    assert drawn == pool
    drawn[0]["id"] = "changed"
    assert pool[0]["id"] == "a"


def test_draw_edges() -> None:
    assert draw([], 3, seed=0) == []
    assert draw([{"id": "a"}], 0, seed=0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        draw([{"id": "a"}], -1, seed=0)
