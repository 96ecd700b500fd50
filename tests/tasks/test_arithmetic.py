"""The built-in task: splits by problem (not by text), the OOD slice, phrasings, the difficulty knob."""

import pytest

from tasks.arithmetic import OOD_TEMPLATES, TEMPLATES, parse_problem, problem_split, sample_problems
from tasks.judging.verifier import final_answer


def _problem(row: dict) -> tuple[str, int, int]:
    return row["op"], min(row["a"], row["b"]), max(row["a"], row["b"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 11])
@pytest.mark.parametrize(("low", "high"), [(1, 9), (1, 20), (10, 40)])
def test_no_problem_is_shared_between_train_and_validation_or_test(seed: int, low: int, high: int) -> None:
    ranges = {"min_operand": low, "max_operand": high}
    train = sample_problems(400, split="train", seed=seed, **ranges)
    validation = sample_problems(150, split="validation", seed=seed, **ranges)
    test = sample_problems(150, split="test", seed=seed, **ranges)
    train_problems = {_problem(p) for p in train}
    assert not train_problems & {_problem(p) for p in validation}
    assert not train_problems & {_problem(p) for p in test}
    assert not {_problem(p) for p in validation} & {_problem(p) for p in test}
    # the split is read from the problem itself: the text parses back to the same problem and split
    for split, rows in (("train", train), ("validation", validation), ("test", test)):
        for row in rows:
            op, a, b, reserved = parse_problem(row["prompt"])  # type: ignore[misc]
            assert (op, a, b, reserved) == (row["op"], row["a"], row["b"], False)
            assert problem_split(op, a, b) == split


def test_order_of_operands_does_not_change_the_split() -> None:
    for a in range(1, 30):
        for b in range(1, 30):
            assert problem_split("add", a, b) == problem_split("add", b, a)


def test_ood_phrasings_are_never_in_training_and_operands_are_beyond_the_range() -> None:
    train = sample_problems(500, split="train", seed=0)
    ood = sample_problems(100, split="ood", seed=0)
    reserved = {t for _, t in OOD_TEMPLATES}
    assert not reserved & {t for _, t in TEMPLATES}
    assert all(not parse_problem(p["prompt"])[3] for p in train)  # type: ignore[index]
    for row in ood:
        assert parse_problem(row["prompt"])[3]  # type: ignore[index]
        assert 10 <= row["a"] <= 18 and 10 <= row["b"] <= 18
        assert row["id"].startswith("ood-")


def test_splits_are_seeded() -> None:
    train = sample_problems(50, split="train", seed=1)
    assert sample_problems(20, split="train", seed=1) == train[:20]
    assert sample_problems(20, split="train", seed=2) != train[:20]
    assert sample_problems(20, split="heldout", seed=1) == sample_problems(20, split="validation", seed=1)


def test_answers_are_right_and_operands_follow_the_knob() -> None:
    for problem in sample_problems(200, split="train", seed=3, min_operand=10, max_operand=40):
        a, sign, b = problem["solution"].split()[:3]
        assert 10 <= int(a) <= 40 and 10 <= int(b) <= 40
        assert int(problem["answer"]) == (int(a) + int(b) if sign == "+" else int(a) - int(b)) >= 0
        assert final_answer(problem["solution"]) == problem["answer"]  # worked solutions are in the stated form


def test_several_phrasings_appear() -> None:
    problems = sample_problems(200, split="train", seed=4)
    starts = {p["prompt"].split()[0] for p in problems}
    assert len(TEMPLATES) >= 6 and len(starts) >= 5


def test_too_many_problems_for_the_space_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not draw"):
        sample_problems(500, split="validation", seed=0, min_operand=1, max_operand=1, operations=["add"])
    with pytest.raises(ValueError, match="split must be one of"):
        sample_problems(5, split="dev", seed=0)
