"""The reward-model judge: a row's score is the sigmoid of a reward model's logit; and the all-of combination.

The reward model is a sequence-classification checkpoint (`models.reward_scorer`), trained on
correct-vs-wrong pairs by `tasks.train_reward` or given as `judge.reward_model`. `AllOfJudge` combines
judges, e.g. the verifier and the reward model both above their thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from configs.schema import JudgeConfig
from models.reward_scorer import RewardScorer, load_reward_model
from tasks.judging.base import Judge
from tasks.judging.verifier import VerifierJudge
from tasks.records import Record


class RewardModelJudge:
    """Scores a row by the sigmoid of a reward model's logit for (templated prompt, response).

    Attributes:
        name: "reward-model".
        seconds: Wall time spent scoring so far.
    """

    name: str = "reward-model"

    def __init__(self, scorer: RewardScorer, *, template: str = "{prompt}") -> None:
        self.scorer = scorer
        self.template = template
        self.seconds = 0.0

    @property
    def forward_passes(self) -> int:
        """Batched forward passes made so far."""
        return self.scorer.forward_passes

    def score(self, rows: Sequence[Record]) -> list[float]:
        """One score in [0, 1] per row, in row order."""
        started = time.perf_counter()
        scores = self.scorer.score(
            [self.template.format(prompt=row["prompt"]) for row in rows], [row["response"] for row in rows]
        )
        self.seconds += time.perf_counter() - started
        return scores


class AllOfJudge:
    """Combines judges: mode "and" scores 1.0 when every judge reaches its threshold, else 0.0; "min" the least.

    Attributes:
        name: "all-of(<names joined by +>)".
    """

    def __init__(
        self, judges: Sequence[Judge], thresholds: Sequence[float], *, mode: Literal["and", "min"] = "and"
    ) -> None:
        if len(judges) != len(thresholds) or not judges:
            raise ValueError("AllOfJudge needs one threshold per judge, and at least one judge")
        self.judges = list(judges)
        self.thresholds = list(thresholds)
        self.mode = mode
        self.name = "all-of(" + "+".join(j.name for j in self.judges) + ")"

    @property
    def forward_passes(self) -> int:
        """Forward passes of the model-backed parts."""
        return sum(getattr(j, "forward_passes", 0) for j in self.judges)

    @property
    def seconds(self) -> float:
        """Scoring time of the model-backed parts."""
        return sum(getattr(j, "seconds", 0.0) for j in self.judges)

    def score(self, rows: Sequence[Record]) -> list[float]:
        """One combined score per row, in row order."""
        per_judge = [judge.score(rows) for judge in self.judges]
        if self.mode == "min":
            return [min(scores) for scores in zip(*per_judge, strict=True)]
        return [
            1.0 if all(s >= t for s, t in zip(scores, self.thresholds, strict=True)) else 0.0
            for scores in zip(*per_judge, strict=True)
        ]


def reward_judge(cfg: JudgeConfig, model_path: str, *, template: str) -> RewardModelJudge | AllOfJudge:
    """The judge `cfg.kind` names (reward-model; all-of: the verifier and it) over the reward model at `model_path`."""
    model, tokenizer = load_reward_model(model_path)
    scorer = RewardScorer(model, tokenizer, batch_size=cfg.reward_batch_size, max_length=cfg.reward_max_length)
    judge = RewardModelJudge(scorer, template=template)
    if cfg.kind == "all-of":
        return AllOfJudge([VerifierJudge(cfg.answer_pattern), judge], [1.0, cfg.reward_threshold], mode=cfg.all_of_mode)
    return judge
