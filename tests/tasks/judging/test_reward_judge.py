"""Tests of tasks.judging.reward_judge: the reward-model judge's scores, and the all-of combination."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from configs.schema import JudgeConfig
from tasks.judging.reward_judge import AllOfJudge, RewardModelJudge, reward_judge
from tasks.records import Record

TEMPLATE = "Question: {prompt}\nAnswer:"  # as tests/tasks/conftest.py trains with


class _Fixed:
    """A judge with fixed scores."""

    def __init__(self, name: str, scores: list[float]) -> None:
        self.name = name
        self.scores = scores
        self.forward_passes = 3

    def score(self, rows: Sequence[Record]) -> list[float]:
        return self.scores[: len(rows)]


def test_all_of_against_hand_computed_values() -> None:
    rows = [{"prompt": "p", "response": "r"}] * 4
    verifier = _Fixed("verifier", [1.0, 1.0, 0.0, 0.0])
    reward = _Fixed("reward-model", [0.7, 0.4, 0.9, 0.1])
    both = AllOfJudge([verifier, reward], [1.0, 0.5])
    assert both.name == "all-of(verifier+reward-model)"
    assert both.score(rows) == [1.0, 0.0, 0.0, 0.0]
    assert AllOfJudge([verifier, reward], [1.0, 0.4]).score(rows) == [1.0, 1.0, 0.0, 0.0]  # >= threshold keeps
    assert AllOfJudge([verifier, reward], [1.0, 0.5], mode="min").score(rows) == [0.7, 0.4, 0.0, 0.0]
    assert both.forward_passes == 6
    with pytest.raises(ValueError):
        AllOfJudge([verifier], [1.0, 0.5])


def test_judge_scores_in_row_order(
    trained_reward_model: tuple[Path, list[dict], dict], labelled_sums: list[Record]
) -> None:
    out, _, _ = trained_reward_model
    rows = labelled_sums[:6]
    judge = reward_judge(JudgeConfig(kind="reward-model", reward_batch_size=4), str(out), template=TEMPLATE)
    assert isinstance(judge, RewardModelJudge) and judge.name == "reward-model"
    scores = judge.score(rows)
    assert len(scores) == 6 and all(0.0 <= s <= 1.0 for s in scores)
    assert judge.forward_passes == 2  # 6 rows in batches of 4
    one_by_one = [judge.score([row])[0] for row in rows]  # padding does not change a row's score
    assert scores == pytest.approx(one_by_one, abs=1e-5)
    assert judge.score(rows[::-1]) == pytest.approx(scores[::-1], abs=1e-5)


def test_all_of_with_the_verifier_and_a_trained_model(
    trained_reward_model: tuple[Path, list[dict], dict], labelled_sums: list[Record]
) -> None:
    out, _, _ = trained_reward_model
    # closed with a period: the verifier credits only "The answer is N." at the end
    rows = [{**row, "response": row["response"] + "."} for row in labelled_sums[:4]]
    for row in rows:  # reference answer: a + b
        a, b = (int(x) for x in row["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
        row["answer"] = str(a + b)
    cfg = JudgeConfig(kind="all-of", reward_threshold=0.0)
    judge = reward_judge(cfg, str(out), template=TEMPLATE)
    assert judge.score(rows) == [1.0, 1.0, 0.0, 0.0]  # threshold 0: the verifier decides
    reward_only = reward_judge(JudgeConfig(kind="reward-model"), str(out), template=TEMPLATE).score(rows)
    minimum = reward_judge(cfg.model_copy(update={"all_of_mode": "min"}), str(out), template=TEMPLATE)
    assert minimum.score(rows) == pytest.approx([reward_only[0], reward_only[1], 0.0, 0.0], abs=1e-6)
