"""The judge seam: the `Judge` protocol every judge implements, and applying a judge to records.

The verifier, the LM judges (Meta Ranking, pointwise), the reward-model judge and their combinations all
implement `Judge.score`. Model-backed judges also report their cost (`CostedJudge`). Whatever the judge,
rows with a reference answer also get `correct` from the verifier, so a learned judge can be measured
against the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from configs.schema import DEFAULT_ANSWER_PATTERN
from tasks.judging.verifier import is_correct
from tasks.records import Record


class Judge(Protocol):
    """Scores judged rows.

    Attributes:
        name: A short name used in metric keys and lineage.
    """

    name: str

    def score(self, rows: Sequence[Record]) -> list[float]:
        """One score in [0, 1] per row, in row order; higher means more likely correct.

        Args:
            rows: Records with at least `prompt`, `response` and `answer` (which may be None).
        """
        ...


class CostedJudge(Judge, Protocol):
    """A model-backed judge that counts what its scoring cost (the LM judges count their last `score` call,
    the reward-model judge every call so far)."""

    @property
    def forward_passes(self) -> int:
        """Batched forward passes of the judge model."""
        ...

    @property
    def seconds(self) -> float:
        """Wall time spent scoring."""
        ...


@dataclass(frozen=True)
class JudgedRound:
    """What judging a round's samples produced, before anything is written.

    Attributes:
        rows: The judged records (`score`, and `correct` where there is an answer), in input order.
        metrics: `judge/...` metrics without the prefix.
        facts: Lineage facts (where the reference bank or reward model came from, the judge model).
        logs: Extra record files to write beside the judged rows, by file name.
    """

    rows: list[Record]
    metrics: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, list[Record]] = field(default_factory=dict)


def judge_records(rows: Sequence[Record], judge: Judge, answer_pattern: str = DEFAULT_ANSWER_PATTERN) -> list[Record]:
    """Copies of `rows` with the judge's `score` and, where there is an answer, the verifier's `correct`.

    Args:
        rows: Generated records (`prompt`, `response`, `answer`, ...).
        judge: The judge that scores them.
        answer_pattern: The expected form of a final answer, for `correct` (strict, as the verifier judge).

    Returns:
        Judged records, in input order.

    Raises:
        ValueError: if the judge returns the wrong number of scores or a score outside [0, 1].
    """
    scores = judge.score(rows)
    if len(scores) != len(rows):
        raise ValueError(f"judge {judge.name!r} returned {len(scores)} scores for {len(rows)} rows")
    judged = []
    for row, score in zip(rows, scores, strict=True):
        score = float(score)
        # A NaN would pass no threshold yet poison every mean, so reject it with the out-of-range ones.
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"judge {judge.name!r} returned score {score} outside [0, 1]")
        out = {**row, "score": score}
        if row.get("answer") is not None:
            out["correct"] = is_correct(row["response"], row["answer"], answer_pattern)
        judged.append(out)
    return judged
