"""The built-in task: seeded, disjoint splits, several phrasings, the difficulty knob, answer extraction."""

import pytest

from tasks.arithmetic import TEMPLATES, extract_answer, is_heldout, sample_problems


def test_splits_are_disjoint_and_seeded() -> None:
    train = sample_problems(300, split="train", seed=1)
    heldout = sample_problems(300, split="heldout", seed=1)
    assert not {p["prompt"] for p in train} & {p["prompt"] for p in heldout}
    assert all(not is_heldout(p["prompt"]) for p in train) and all(is_heldout(p["prompt"]) for p in heldout)
    assert sample_problems(20, split="train", seed=1) == train[:20]
    assert sample_problems(20, split="train", seed=2) != train[:20]


def test_answers_are_right_and_operands_follow_the_knob() -> None:
    for problem in sample_problems(200, split="train", seed=3, min_operand=10, max_operand=40):
        a, sign, b = problem["solution"].split()[:3]
        assert 10 <= int(a) <= 40 and 10 <= int(b) <= 40
        assert int(problem["answer"]) == (int(a) + int(b) if sign == "+" else int(a) - int(b)) >= 0
        assert extract_answer(problem["solution"]) == problem["answer"]


def test_several_phrasings_appear() -> None:
    problems = sample_problems(200, split="train", seed=4)
    starts = {p["prompt"].split()[0] for p in problems}
    assert len(TEMPLATES) >= 6 and len(starts) >= 5


def test_too_many_problems_for_the_space_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not draw"):
        sample_problems(500, split="heldout", seed=0, min_operand=1, max_operand=1, operations=["add"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" 3 + 4 = 7. The answer is 7.", "7"), ("so 12", "12"), ("no number", None), ("answer is -3", "-3")],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
