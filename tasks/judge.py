"""Judging: score each sampled response with a pluggable judge, and summarise the scores.

`Judge` is the seam: the verifier below is the one built-in judge, and Meta Ranking, pointwise LLM
judges and reward models plug in by implementing the same `score` method. Whatever the judge, rows
with a reference answer also get `correct` from the verifier, so a learned judge can be measured
against the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from configs.schema import CampaignConfig, JudgeConfig
from tasks.arithmetic import extract_answer
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RunContext


class Judge(Protocol):
    """Scores judged rows; implemented by the verifier here and by model-backed judges in `models/`.

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


class VerifierJudge:
    """Scores 1.0 when the response's final number equals the reference answer, else 0.0."""

    name: str = "verifier"

    def score(self, rows: Sequence[Record]) -> list[float]:
        """1.0 for each row whose response is correct, 0.0 otherwise (also when the answer is None)."""
        return [1.0 if is_correct(row["response"], row.get("answer")) else 0.0 for row in rows]


def is_correct(response: str, answer: Any) -> bool:
    """Whether a response's final answer (`extract_answer`) matches a reference answer.

    Both sides are compared as integers when both parse as one ("012" matches "12"), else as stripped text.

    Args:
        response: The model's response.
        answer: The reference answer; None never matches.
    """
    if answer is None:
        return False
    predicted = extract_answer(response)
    if predicted is None:
        return False
    reference = str(answer).strip()
    try:
        return int(predicted) == int(reference)
    except ValueError:
        return predicted.strip() == reference


def judge_records(rows: Sequence[Record], judge: Judge) -> list[Record]:
    """Copies of `rows` with the judge's `score` and, where there is an answer, the verifier's `correct`.

    Args:
        rows: Generated records (`prompt`, `response`, `answer`, ...).
        judge: The judge that scores them.

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
            out["correct"] = is_correct(row["response"], row["answer"])
        judged.append(out)
    return judged


def judge_summary(rows: Sequence[Record], threshold: float) -> dict[str, float]:
    """Round metrics of judged rows (log under `judge/`).

    Args:
        rows: Judged records (`id`, `score`, and `correct` where the prompt has an answer).
        threshold: The selection threshold, for the accept rate.

    Returns:
        `accept_rate` (share of rows scoring >= threshold), `mean_score`, `accuracy` (share correct
        among rows with an answer), `pass_at_k` (share of prompts with an answer that have at least one
        correct sample) and `prompts` (distinct prompt ids). A share with nothing to count is NaN.
    """
    graded = [row for row in rows if "correct" in row]
    correct_by_prompt: dict[str, bool] = {}
    for row in graded:
        correct_by_prompt[row["id"]] = correct_by_prompt.get(row["id"], False) or bool(row["correct"])
    return {
        "accept_rate": _share([row["score"] >= threshold for row in rows]),
        "mean_score": _mean([row["score"] for row in rows]),
        "accuracy": _share([bool(row["correct"]) for row in graded]),
        "pass_at_k": _share(list(correct_by_prompt.values())),
        "prompts": float(len({row["id"] for row in rows})),
    }


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def make_judge(cfg: JudgeConfig) -> Judge:
    """The judge a config names, when it needs no model (the verifier).

    LLM judges (pointwise, meta-ranking) need a loaded model and a reference bank: `judge_task` builds them
    with `tasks.judge_llm.make_llm_judge`.

    Raises:
        ValueError: for a judge kind that needs a model.
    """
    if cfg.kind == "verifier":
        return VerifierJudge()
    if cfg.kind in ("reward-model", "all-of"):
        raise ValueError(f"judge.kind: {cfg.kind!r} needs a reward model; build it with tasks.reward_model")
    raise ValueError(f"judge.kind: {cfg.kind!r} needs a judge model; build it with tasks.judge_llm.make_llm_judge")


def judge_model(config: CampaignConfig, policy: ModelRef | None) -> ModelRef:
    """The judge model of an LLM judge: `judge.model` if set, else the policy's base (no adapter)."""
    from tasks.policy import prepare_base

    if config.judge.model is not None:
        return prepare_base(config.model_copy(update={"model": config.judge.model}))
    if policy is not None:
        return ModelRef(source=policy.source, base=policy.base, sha256=policy.sha256)
    return prepare_base(config)


@task(name="judge", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)  # resumable (flows/resume.py)
def judge_task(
    config: CampaignConfig,
    generated: DatasetRef,
    out_path: str,
    ctx: RunContext,
    policy: ModelRef | None = None,
    workdir: str | None = None,
) -> DatasetRef:
    """Score the round's samples, write `judged.jsonl`, log `judge/*` metrics and the data.

    LLM judges load the judge model (`judge_model`), build the reference bank from earlier rounds under
    `workdir` (or a file), calibrate their threshold and write `judge-bank.jsonl` and (Meta Ranking)
    `judge-references.jsonl` (which references judged which sample) beside the judged rows. Reward-model
    judges (reward-model, all-of) use `judge.reward_model`, or train one into `reward-model/` beside the
    judged rows (`tasks.reward_model.round_reward_judge`). With
    `judge.cascade`, prompts whose best response scores below `select.threshold` get the stronger model's
    answer as an extra row.
    """
    cfg = config.judge
    rows = read_records(generated)
    seed = config.seed * 1000 + ctx.step
    threshold = config.select.threshold
    metrics: dict[str, float] = {}
    facts: dict[str, Any] = {}
    if cfg.kind == "verifier":
        judged = judge_records(rows, make_judge(cfg))
    elif cfg.kind in ("reward-model", "all-of"):
        from models.loading import set_torch_threads
        from tasks.progress import emit
        from tasks.reward_model import round_reward_judge

        set_torch_threads(config.model.torch_threads)
        reward_dir = Path(out_path).with_name("reward-model")
        judge, metrics, facts = round_reward_judge(
            config, rows, policy, workdir, reward_dir, round_index=ctx.step, seed=seed, progress=emit
        )
        judged = judge_records(rows, judge)
        metrics.update(forward_passes=float(judge.forward_passes), seconds=judge.seconds)
    else:
        from models.option_scorer import OptionScorer
        from models.loading import load_policy, set_torch_threads
        from tasks.judge_llm import build_bank, judge_with_llm
        from tasks.meta_ranking import OPTIONS
        from tasks.prompts import few_shot_prefix

        set_torch_threads(config.model.torch_threads)
        judge_ref = judge_model(config, policy)
        model, tokenizer = load_policy(judge_ref.base)
        scorer = OptionScorer(model, tokenizer, OPTIONS, batch_size=cfg.batch_size)
        bank, facts = build_bank(cfg, rows, workdir, ctx.step, seed)
        judged, metrics, logs = judge_with_llm(
            rows,
            cfg,
            scorer,
            bank,
            template=config.prompts.template,
            select_threshold=threshold,
            seed=seed,
            preamble=few_shot_prefix(config) if cfg.examples else "",
        )
        facts["judge_model"] = judge_ref
        for name, records in logs.items():
            write_records(Path(out_path).with_name(name), records)
            ctx.log_artifact(Path(out_path).with_name(name), "data")
        del model, scorer
    if cfg.cascade is not None:
        judged, routed = _cascade(config, judged, seed)
        metrics["routed_share"] = routed / max(len({row["id"] for row in judged}), 1)
        metrics["routed"] = float(routed)
    ref = write_records(out_path, judged)
    write_lineage(Path(out_path), generated=generated, judge=cfg, **facts)
    summary = judge_summary(judged, threshold)
    ctx.log_metrics({f"judge/{k}": v for k, v in {**summary, **metrics}.items()})
    ctx.log_dataset(ref, name=f"round-{ctx.step}-judged", context="judged")
    return ref


def _cascade(config: CampaignConfig, judged: list[Record], seed: int) -> tuple[list[Record], int]:
    """Judged rows plus the stronger model's answers to the routed prompts, and how many were routed."""
    from models.loading import load_policy
    from models.sampling import HFSampler
    from tasks.cascade import cascade_rows, routed_prompts
    from tasks.policy import prepare_base

    cascade = config.judge.cascade
    assert cascade is not None
    routed = routed_prompts(judged, config.select.threshold)
    if not routed:
        return judged, 0
    strong = prepare_base(config.model_copy(update={"model": cascade.model}))
    model, tokenizer = load_policy(strong.base)
    extra = cascade_rows(
        judged,
        routed,
        HFSampler(model, tokenizer),
        template=config.prompts.template,
        max_new_tokens=cascade.max_new_tokens,
        stop=config.generate.stop,
        seed=seed,
    )
    return judged + extra, len(routed)
