"""Build a judge from the config: the one place `judge.kind` becomes a judge object.

The round's judge step (`tasks/judge.py`) and `selftrain judge-eval` both call `build_judge`. What a kind
needs is loaded first and passed in: the judge model's option scorer (`load_option_scorer`) for the LM
judges, the references for Meta Ranking, a reward model's folder (given as `judge.reward_model`, or
trained by `tasks.train_reward`) for the reward-model kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.schema import CampaignConfig, JudgeConfig
from models.loading import shared_policy
from models.option_scorer import OptionScorer, with_options
from tasks.base_model import prepare_base
from tasks.judging.base import CostedJudge
from tasks.judging.label_transfer import LabelTransferJudge
from tasks.judging.lm import OPTIONS, PointwiseJudge
from tasks.judging.meta_ranking import RANK_OPTIONS, MetaRankingJudge
from tasks.judging.reward_judge import reward_judge
from tasks.judging.verifier import VerifierJudge
from tasks.records import ModelRef, Record


def judge_model(config: CampaignConfig, policy: ModelRef | None) -> ModelRef:
    """The model behind an LM or reward-model judge: `judge.model` if set, else the policy's base (no adapter)."""
    if config.judge.model is not None:
        return prepare_base(config.model_copy(update={"model": config.judge.model}))
    if policy is not None:
        return ModelRef(source=policy.source, base=policy.base, sha256=policy.sha256)
    return prepare_base(config)


def load_option_scorer(config: CampaignConfig, policy: ModelRef | None) -> tuple[OptionScorer, ModelRef]:
    """The judge model (`judge_model`) loaded as an option scorer over `OPTIONS`, and its reference."""
    judge_ref = judge_model(config, policy)
    model, tokenizer = shared_policy(judge_ref.base)  # read-only, shared with other stages
    return OptionScorer(model, tokenizer, OPTIONS, batch_size=config.judge.batch_size), judge_ref


def build_judge(
    cfg: JudgeConfig,
    *,
    template: str,
    seed: int = 0,
    scorer: OptionScorer | None = None,
    references: Sequence[Record] = (),
    reward_model: str | None = None,
    preamble: str = "",
) -> CostedJudge:
    """The judge `cfg.kind` names, over what it needs.

    Args:
        cfg: The judge config (its `kind`, and the settings of that kind).
        template: The policy's prompt template (`{prompt}` in it).
        seed: Seed of Meta Ranking's reference draw.
        scorer: The judge model's option scorer (yes/no): pointwise, label-transfer and meta-ranking (which reads
            A/B from the same model).
        references: Meta Ranking's (and label transfer's) labelled references (`prompt`, `response`, `correct`).
        reward_model: Folder of a reward model: reward-model and all-of.
        preamble: Text opening every LM judge prompt (the few-shot examples, with `judge.examples`).

    Raises:
        ValueError: when what the kind needs was not given (one line naming `judge.kind`), or Meta Ranking
            gets no references.
    """
    if cfg.kind == "verifier":
        return VerifierJudge(cfg.answer_pattern)
    if cfg.kind in ("reward-model", "all-of"):
        if reward_model is None:
            raise ValueError(f"judge.kind: {cfg.kind!r} needs a reward model (judge.reward_model, or a trained one)")
        return reward_judge(cfg, reward_model, template=template)
    if scorer is None:
        raise ValueError(f"judge.kind: {cfg.kind!r} needs the judge model's option scorer (load_option_scorer)")
    if cfg.kind == "pointwise":
        return PointwiseJudge(scorer, template=template, preamble=preamble)
    if cfg.kind == "label-transfer":
        return LabelTransferJudge(
            scorer,
            references,
            template=template,
            references=cfg.references,
            swap=cfg.swap,
            seed=seed,
            weights=(cfg.weight_correct, cfg.weight_wrong),
            preamble=preamble,
        )
    # Meta Ranking reads " A"/" B" from the same judge model: a second scorer over it, no second load.
    return MetaRankingJudge(
        with_options(scorer, RANK_OPTIONS),
        references,
        template=template,
        references=cfg.references,
        swap=cfg.swap,
        seed=seed,
        weak=cfg.weak_evidence,
        preamble=preamble,
    )
