"""Unit tests of the judge step (tasks.judge): the round's judge summary."""

from __future__ import annotations

import math

import pytest

from tasks.judge import judge_summary


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
