"""Unit tests for tasks.prompts: the campaign's splits, extra sets and seeded draws."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config
from tasks.accumulate import accumulate
from tasks.arithmetic import parse_problem, problem_split
from tasks.prompt_files import PromptFileError, load_prompt_file
from tasks.prompts import (
    arithmetic_prompts,
    campaign_prompts,
    capped_note,
    carved_for_validation,
    check_prompt_sources,
    draw,
    few_shot_rows,
    file_split,
    gold_prompts,
    has_split,
    item_kind,
    item_problem,
    load_extra_sets,
    normalized,
    shared_rows,
    text_key,
)
from tasks.select import gold_rows


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: Sequence[object]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


# --- arithmetic and draws ----------------------------------------------------------------------


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


def test_gold_examples_are_one_fixed_training_draw_in_the_campaign_working() -> None:
    """select.gold_examples: the same training-split problems whatever the round, none held out, each with its
    worked solution in the configured working; another seed draws other problems."""
    config = load_config("tiny", ["prompts.working=ones_all", "prompts.max_operand=20", "select.gold_examples=40"])
    gold = gold_prompts(config, config.select.gold_examples)
    assert len(gold) == len({row["prompt"] for row in gold}) == 40
    held_out = {row["prompt"] for split in ("validation", "test", "ood") for row in campaign_prompts(config, split, 1)}
    assert not held_out & {row["prompt"] for row in gold}
    for row in gold:
        parsed = parse_problem(row["prompt"])
        assert parsed is not None and problem_split(*parsed[:3]) == "train"
        assert row["solution"].endswith(f" The answer is {row['answer']}.")
    assert any(row["solution"].count("=") == 2 for row in gold)  # the ones_all working states a fact first
    assert gold_prompts(config, 40) == gold and gold_prompts(config, 0) == []
    other = gold_prompts(load_config("tiny", ["seed=1", "prompts.max_operand=20"]), 40)
    assert {row["prompt"] for row in other} != {row["prompt"] for row in gold}
    two_rounds = [gold_rows(gold, 40, seed=seed) for seed in (1, 2)]  # select adds them in every round ...
    assert len(accumulate(two_rounds, max_per_prompt=2)) == 40  # ... and ReST-EM's training set holds them once


def test_a_two_step_share_changes_the_training_draw_alone() -> None:
    """prompts.two_step_share mixes chained problems, written in the working, into gold rows and sampled prompts;
    validation, test, ood and the few-shot examples are drawn as without it. With a level, or for a file, it is a
    one-line error naming the fields."""
    plain = load_config("tiny", ["prompts.working=digits", "prompts.max_operand=20"])
    mixed = load_config("tiny", ["prompts.working=digits", "prompts.max_operand=20", "prompts.two_step_share=0.5"])
    for split in ("validation", "test", "ood"):
        assert campaign_prompts(mixed, split, 1) == campaign_prompts(plain, split, 1)
    assert few_shot_rows(mixed) == few_shot_rows(plain)
    trained = campaign_prompts(mixed, "train", 1) + gold_prompts(mixed, 40)
    chained = [row for row in trained if parse_problem(row["prompt"]) is None]
    assert len(chained) > 10 and all(row["solution"].count("=") >= 2 for row in chained)  # two steps
    assert any(row["solution"].count("=") == 6 for row in chained)  # each in the digit working
    with pytest.raises(ConfigError, match="prompts.two_step_share is for source 'arithmetic' without"):
        load_config("tiny", ["prompts.two_step_share=0.5", "prompts.level=2"])


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
    # fewer rows than a size asks is said, not taken silently
    n = len(validation)
    assert capped_note(config, "validation", n) == (  # type: ignore[arg-type]
        f"validation: {n} prompts, all the rows carved from prompts.train_path (prompts.validation_size=500)"
    )
    assert capped_note(config, "test", 10) == (  # type: ignore[arg-type]
        "test: 10 prompts, all prompts.test_path holds (prompts.test_size=128)"
    )
    assert capped_note(config, "train", len(train)) is None  # type: ignore[arg-type]  # 128 of its 140-odd rows
    assert capped_note(config, "train", 100) == (  # type: ignore[arg-type]
        "train: 100 prompts, all prompts.train_path holds less the rows carved for validation (prompts.train_size=128)"
    )
    assert capped_note(config, "ood", 0) is None  # type: ignore[arg-type]  # a file campaign has no OOD slice
    assert capped_note(load_config("tiny"), "test", 3) is None  # the built-in task draws what it asks


def test_a_carved_validation_split_keeps_each_problem_on_one_side(tmp_path: Path) -> None:
    # 40 problems asked three ways each: carving by row id would split most problems between the two sides, so
    # validation would score rewordings of trained problems.
    rows = [
        {"id": f"p{p}-{w}", "prompt": f"wording {w} of problem {p}", "answer": p, "problem": f"p{p}"}
        for p in range(40)
        for w in range(3)
    ]
    jsonl(tmp_path / "train.jsonl", rows)
    config = _file_config(tmp_path, "prompts.validation_size=500")
    train = file_split(config.prompts, "train")  # type: ignore[attr-defined]
    validation = file_split(config.prompts, "validation")  # type: ignore[attr-defined]
    assert validation and train and len(train) + len(validation) == 120
    assert not {row["problem"] for row in train} & {row["problem"] for row in validation}
    assert all(len([r for r in validation if r["problem"] == row["problem"]]) == 3 for row in validation)
    assert check_prompt_sources(config.prompts) == []  # type: ignore[attr-defined]
    # By id (the rule for a row without a problem), the same rows would have split 30 or more problems.
    by_id = {row["problem"] for row in rows if carved_for_validation({"id": row["id"], "answer": 1})}
    assert len(by_id - {row["problem"] for row in validation}) >= 10


def test_a_problem_two_files_ask_in_other_words_is_an_overlap(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "answer": i, "problem": f"p{i}"} for i in range(10)])
    jsonl(
        tmp_path / "val.jsonl",
        [{"id": "v0", "prompt": "q0 asked another way", "answer": 0, "problem": "p0"}]
        + [{"id": "v1", "prompt": "new", "answer": 1, "problem": "p-new"}, {"id": "v2", "prompt": "also", "answer": 2}],
    )
    config = _file_config(tmp_path, f"prompts.validation_path={tmp_path / 'val.jsonl'}")
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"{tmp_path / 'val.jsonl'}: 1 row(s) (id 'v0': 'q0 asked another way') of the validation prompts are also "
        "training prompts or ask one of their problems in other words (the 'problem' column); at most "
        "prompts.max_overlap=0 allowed"
    )


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
        f"{tmp_path / 'val.jsonl'}: 3 row(s) (id 'v0': ' q0 ', id 'v1': ' q1 ', id 'v2': ' q2 ') of the validation "
        "prompts are also training prompts; at most prompts.max_overlap=0 allowed"
    )
    allowed = _file_config(tmp_path, f"prompts.validation_path={tmp_path / 'val.jsonl'}", "prompts.max_overlap=3")
    notes = check_prompt_sources(allowed.prompts)  # type: ignore[attr-defined]
    assert len(notes) == 1 and "3 row(s) (id 'v0'" in notes[0] and "max_overlap=3" in notes[0]


def test_prompts_are_compared_case_folded_with_whitespace_collapsed() -> None:
    assert normalized("  tom has 5 apples.\t How MANY?\n") == "tom has 5 apples. how many?"
    assert normalized("Tom has 5 apples. How many?") == normalized("tom has 5 apples.  how many?")
    assert normalized("Tom has 5 apples.") != normalized("Tom has 5 apples")  # punctuation counts
    train = [{"id": "t0", "prompt": "Tom has 5 apples. How many?"}]
    other = [{"id": "v0", "prompt": " tom has 5 APPLES.  How many?"}, {"id": "v1", "prompt": "Tom has 6 apples."}]
    assert shared_rows(other, train, text_key) == [0]


def test_validation_and_test_are_compared_with_each_other_and_after_normalising(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"prompt": f"Tom has {i} apples. How many?"} for i in range(10)])
    jsonl(
        tmp_path / "val.jsonl",
        [{"id": "shared", "prompt": "What is 12 plus 30?", "answer": 42}, {"id": "v1", "prompt": "new", "answer": 1}],
    )
    jsonl(tmp_path / "test.jsonl", [{"id": "t0", "prompt": "what is 12  plus 30?", "answer": 42}])
    files = (f"prompts.validation_path={tmp_path / 'val.jsonl'}", f"prompts.test_path={tmp_path / 'test.jsonl'}")
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(_file_config(tmp_path, *files).prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"{tmp_path / 'test.jsonl'}: 1 row(s) (id 't0': 'what is 12  plus 30?') of the test prompts are also "
        "validation prompts; at most prompts.max_overlap=0 allowed"
    )
    # a training prompt in another case and spacing is the same prompt; each pair is noted within max_overlap
    jsonl(
        tmp_path / "val.jsonl",
        [{"id": "v0", "prompt": "tom has 3 apples.  how many?", "answer": 3}, {"id": "v1", "prompt": "x", "answer": 1}],
    )
    jsonl(
        tmp_path / "test.jsonl",
        [{"id": f"t{i}", "prompt": f" TOM HAS {i} apples. How many? ", "answer": i} for i in range(7)]
        + [{"id": "t7", "prompt": "X", "answer": 1}],
    )
    notes = check_prompt_sources(_file_config(tmp_path, *files, "prompts.max_overlap=7").prompts)  # type: ignore[attr-defined]
    assert notes == [
        f"{tmp_path / 'val.jsonl'}: 1 row(s) (id 'v0': 'tom has 3 apples.  how many?') of the validation prompts "
        "are also training prompts; allowed by prompts.max_overlap=7",
        f"{tmp_path / 'test.jsonl'}: 7 row(s) (id 't0': ' TOM HAS 0 apples. How many? ', id 't1': ' TOM HAS 1 "
        "apples. How many? ', id 't2': ' TOM HAS 2 apples. How many? ', ...) of the test prompts are also training "
        "prompts; allowed by prompts.max_overlap=7",
        f"{tmp_path / 'test.jsonl'}: 2 row(s) (id 't3': ' TOM HAS 3 apples. How many? ', id 't7': 'X') of the test "
        "prompts are also validation prompts; allowed by prompts.max_overlap=7",
    ]


def test_the_shipped_word_problem_files_share_no_prompt_between_splits() -> None:
    # configs/data/word-problems: no prompt of one split is another's after normalising (an audit found test rows
    # that repeat a training row's numbers and answer in another story; that is not the same prompt)
    data = Path(__file__).resolve().parents[2] / "configs" / "data" / "word-problems"
    files = [f"prompts.{split}_path={data / f'{split}.jsonl'}" for split in ("train", "validation", "test")]
    assert check_prompt_sources(load_config("word-problems", files).prompts) == []


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


def test_item_kind_is_a_builtin_question_s_operation_or_a_file_row_s_kind_column() -> None:
    config = load_config("tiny", ["prompts.test_size=30", "prompts.ood_size=10"])
    kind = item_kind(config)
    for split in ("test", "ood"):
        rows = campaign_prompts(config, split, 0)
        assert [kind(row) for row in rows] == [parse_problem(row["prompt"])[0] for row in rows]  # type: ignore[index]
        assert {kind(row) for row in rows} == {"add", "sub"}
    assert kind({"prompt": "Not a question of the task."}) is None
    from_file = item_kind(load_config("tiny", ["prompts.source=file", "prompts.train_path=t.jsonl"]))
    assert from_file({"prompt": "q", "kind": "ages"}) == "ages"
    assert from_file({"prompt": "q"}) is None and from_file({"prompt": "q", "kind": ""}) is None


def test_a_training_file_whose_carved_validation_split_is_empty_is_refused(tmp_path: Path) -> None:
    # r0 and r2 hash outside the carved fifth: with no validation file, the campaign would have nothing to score.
    jsonl(tmp_path / "train.jsonl", [{"id": f"r{i}", "prompt": f"q{i}", "answer": i} for i in (0, 2)])
    config = _file_config(tmp_path)
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"prompts.train_path={tmp_path / 'train.jsonl'}: the validation split carved from it is empty (none of its "
        "2 answered rows falls in the carved share, a fifth of the answered rows chosen by a hash of each row's "
        "problem, or of its id where it has none): set "
        "prompts.validation_path or add answered rows"
    )
    jsonl(tmp_path / "train.jsonl", [{"id": f"r{i}", "prompt": f"q{i}"} for i in (0, 2)])
    with pytest.raises(PromptFileError, match=r"train.jsonl: no row has an 'answer', so no validation split can be"):
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    # With a validation file, nothing is carved.
    jsonl(tmp_path / "validation.jsonl", [{"prompt": "v", "answer": 1}])
    with_file = _file_config(tmp_path, f"prompts.validation_path={tmp_path / 'validation.jsonl'}")
    assert check_prompt_sources(with_file.prompts) == []  # type: ignore[attr-defined]


def test_a_training_file_carved_whole_into_validation_is_refused(tmp_path: Path) -> None:
    # r1, r3 and r5 all hash into the carved fifth: every row is a validation row, none a training one.
    jsonl(tmp_path / "train.jsonl", [{"id": f"r{i}", "prompt": f"q{i}", "answer": i} for i in (1, 3, 5)])
    config = _file_config(tmp_path)
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"prompts.train_path={tmp_path / 'train.jsonl'}: all 3 answered rows went to the validation split carved "
        "from it (a fifth of the answered rows chosen by a hash of each row's problem, or of its id where it has "
        "none), so training has none: set "
        "prompts.validation_path (then every row of this file trains) or add answered rows"
    )


def test_a_prompt_a_scored_file_holds_twice_is_noted_and_counted_once(tmp_path: Path) -> None:
    jsonl(tmp_path / "train.jsonl", [{"id": f"r{i}", "prompt": f"q{i}", "answer": i} for i in range(10)])
    test = [
        {"id": "t0", "prompt": "What is 2 + 2?", "answer": 4},
        {"id": "t1", "prompt": "what is  2 + 2?", "answer": 4},
    ]
    jsonl(tmp_path / "test.jsonl", [*test, {"id": "t2", "prompt": "What is 3 + 3?", "answer": 6}])
    jsonl(tmp_path / "validation.jsonl", [{"id": "v0", "prompt": "v", "answer": 1}])
    config = _file_config(
        tmp_path,
        f"prompts.test_path={tmp_path / 'test.jsonl'}",
        f"prompts.validation_path={tmp_path / 'validation.jsonl'}",
    )
    assert check_prompt_sources(config.prompts) == [  # type: ignore[attr-defined]
        f"{tmp_path / 'test.jsonl'}: 1 row(s) (id 't1': 'what is  2 + 2?') of the test prompts repeat an earlier one; "
        "each is scored, and the statistics count a prompt once (a `problem` column groups rewordings too)"
    ]
    problem = item_problem(config)  # type: ignore[arg-type]
    rows = load_prompt_file(tmp_path / "test.jsonl")
    assert problem(rows[0]) == problem(rows[1]) != problem(rows[2])
    assert problem({**rows[2], "problem": "p6"}) == "p6"


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_prompt_asked_twice_with_two_answers_is_refused_naming_both(tmp_path: Path, split: str) -> None:
    rows = [{"id": f"r{i}", "prompt": f"q{i}", "answer": i} for i in range(6)]
    rows += [{"id": "again", "prompt": "Q1 ", "answer": 7}]  # q1 again (case and spaces aside), answered otherwise
    jsonl(tmp_path / f"{split}.jsonl", rows)
    if split == "test":
        jsonl(tmp_path / "train.jsonl", [{"prompt": f"t{i}", "answer": i} for i in range(10)])
    jsonl(tmp_path / "val.jsonl", [{"prompt": "v", "answer": 1}])
    config = _file_config(
        tmp_path,
        f"prompts.validation_path={tmp_path / 'val.jsonl'}",
        *([f"prompts.test_path={tmp_path / 'test.jsonl'}"] if split == "test" else []),
    )
    with pytest.raises(PromptFileError) as caught:
        check_prompt_sources(config.prompts)  # type: ignore[attr-defined]
    assert str(caught.value) == (
        f"{tmp_path / f'{split}.jsonl'}: line 7, id 'again' asks the prompt of line 2, id 'r1' with the answer '7', "
        "not '1': one of the two labels is wrong"
    )


def test_a_file_splits_lineage_names_the_file_and_its_content_hash(tmp_path: Path) -> None:
    from tasks.prompts import source_files
    from tasks.records import sha256_file

    jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "answer": i} for i in range(10)])
    jsonl(tmp_path / "test.jsonl", [{"prompt": "t", "answer": 1}])
    config = _file_config(tmp_path, f"prompts.test_path={tmp_path / 'test.jsonl'}")
    train = {"path": str(tmp_path / "train.jsonl"), "sha256": sha256_file(tmp_path / "train.jsonl")}
    assert source_files(config, "train") == {"prompts.train_path": train}  # type: ignore[arg-type]
    assert source_files(config, "validation") == {"prompts.train_path": train}  # type: ignore[arg-type]  # carved
    assert source_files(config, "test")["prompts.test_path"]["sha256"] == sha256_file(tmp_path / "test.jsonl")  # type: ignore[arg-type]
    assert source_files(config, "ood") == {} and source_files(load_config("tiny"), "train") == {}  # type: ignore[arg-type]
