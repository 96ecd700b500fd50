"""Unit tests for tasks.judge: the verifier, judged copies and the round summary."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from tasks.judge import Judge, VerifierJudge, is_correct, judge_records, judge_summary
from tasks.records import Record


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("The answer is 12.", "12", True),
        (" 5 + 7 = 12. The answer is 012", "12", True),
        ("answer is 012", "12", True),
        ("The answer is 13.", "12", False),
        ("I do not know.", "12", False),
        ("The answer is 12.", None, False),
        ("The answer is 3. No wait, the answer is 12", "12", True),
        ("The answer is 12. No wait, the answer is 3", "12", False),
        ("12 apples, so the answer is 5", "12", False),  # "answer is" beats a later or earlier bare number
        ("7 + 5 = 12", "12", True),  # no "answer is": the last number
        ("The answer is -4", " -4 ", True),
        ("The answer is 12", 12, True),  # a non-string reference is compared by value
        ("The answer is 12", "twelve", False),  # not an integer: compared as text
    ],
)
def test_verifier(response: str, answer: object, expected: bool) -> None:
    assert is_correct(response, answer) is expected
    assert VerifierJudge().score([{"prompt": "q", "response": response, "answer": answer}]) == [float(expected)]


def test_verifier_is_a_judge() -> None:
    judge: Judge = VerifierJudge()
    assert judge.name == "verifier"


class ConstantJudge:
    """A stand-in learned judge that scores every row the same."""

    name = "constant"

    def __init__(self, value: float, count: int | None = None) -> None:
        self.value, self.count = value, count

    def score(self, rows: Sequence[Record]) -> list[float]:
        return [self.value] * (len(rows) if self.count is None else self.count)


ROWS: list[Record] = [
    {"id": "p1", "sample": 0, "prompt": "q1", "response": "The answer is 4", "answer": "4"},
    {"id": "p1", "sample": 1, "prompt": "q1", "response": "The answer is 5", "answer": "4"},
    {"id": "p2", "sample": 0, "prompt": "q2", "response": "The answer is 1", "answer": "2"},
    {"id": "p3", "sample": 0, "prompt": "q3", "response": "hello", "answer": None},
]


def test_judge_records_adds_score_and_correct_without_touching_input() -> None:
    judged = judge_records(ROWS, ConstantJudge(0.7))
    assert [r["score"] for r in judged] == [0.7, 0.7, 0.7, 0.7]
    assert [r.get("correct") for r in judged] == [True, False, False, None]
    assert "correct" not in judged[3]  # no reference answer, no truth to record
    assert all("score" not in r for r in ROWS)
    assert judged[0]["response"] == ROWS[0]["response"]


def test_judge_records_with_verifier() -> None:
    assert [r["score"] for r in judge_records(ROWS, VerifierJudge())] == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        (ConstantJudge(0.5, count=3), "returned 3 scores for 4 rows"),
        (ConstantJudge(1.5), "score 1.5 outside"),
        (ConstantJudge(math.nan), "score nan outside"),
    ],
)
def test_judge_records_rejects_bad_judges(judge: ConstantJudge, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_records(ROWS, judge)


def test_judge_summary() -> None:
    judged = [
        {"id": "p1", "score": 1.0, "correct": True},
        {"id": "p1", "score": 0.2, "correct": False},
        {"id": "p2", "score": 0.5, "correct": False},
        {"id": "p2", "score": 0.4, "correct": False},
        {"id": "p3", "score": 0.9},  # no answer: counts for accept_rate and mean_score only
    ]
    summary = judge_summary(judged, threshold=0.5)
    assert summary == {
        "accept_rate": pytest.approx(3 / 5),
        "mean_score": pytest.approx(3.0 / 5),
        "accuracy": pytest.approx(1 / 4),
        "pass_at_k": pytest.approx(1 / 2),
        "prompts": 3.0,
    }


def test_judge_summary_without_answers_or_rows() -> None:
    summary = judge_summary([{"id": "a", "score": 0.0}], threshold=0.5)
    assert summary["accept_rate"] == 0.0
    assert math.isnan(summary["accuracy"]) and math.isnan(summary["pass_at_k"])
    empty = judge_summary([], threshold=0.5)
    assert empty["prompts"] == 0.0 and math.isnan(empty["accept_rate"]) and math.isnan(empty["mean_score"])
