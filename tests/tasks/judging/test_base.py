"""Unit tests of tasks.judging.base: judged copies of records, and judges that break the protocol."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from tasks.judging.base import judge_records
from tasks.judging.verifier import VerifierJudge
from tasks.records import Record


class ConstantJudge:
    """A stand-in learned judge that scores every row the same."""

    name = "constant"

    def __init__(self, value: float, count: int | None = None) -> None:
        self.value, self.count = value, count

    def score(self, rows: Sequence[Record]) -> list[float]:
        return [self.value] * (len(rows) if self.count is None else self.count)


ROWS: list[Record] = [
    {"id": "p1", "sample": 0, "prompt": "q1", "response": "The answer is 4.", "answer": "4"},
    {"id": "p1", "sample": 1, "prompt": "q1", "response": "The answer is 5.", "answer": "4"},
    {"id": "p2", "sample": 0, "prompt": "q2", "response": "The answer is 1.", "answer": "2"},
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
