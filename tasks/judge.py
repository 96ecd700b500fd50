"""The judge step of a round: score the sampled responses with the configured judge, and summarise.

The judges themselves live in `tasks.judging` and are made by its `build_judge`. This module holds the
pure parts of the step (an LM judge's calibrated scoring of a round, the round's `judge/*` summary) and
the thin `@task` at the bottom that loads what the judge needs, writes `judged.jsonl` and logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from configs.schema import CampaignConfig, JudgeConfig
from models.loading import set_torch_threads
from models.option_scorer import OptionScorer
from tasks.judging.base import JudgedRound, judge_records
from tasks.judging.build import build_judge, load_option_scorer
from tasks.judging.calibration import auroc, calibrate_threshold, error_detection, keep_stats, rescale
from tasks.judging.cascade import add_cascade
from tasks.judging.meta_ranking import MetaRankingJudge
from tasks.judging.reference_bank import build_bank, draw_panel, split_dev
from tasks.progress import emit
from tasks.prompts import few_shot_prefix
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RunContext
from tasks.train_reward import round_reward_model


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


def judge_with_llm(
    rows: Sequence[Record],
    cfg: JudgeConfig,
    scorer: OptionScorer,
    bank: Sequence[Record],
    *,
    template: str,
    select_threshold: float,
    seed: int,
    preamble: str = "",
) -> JudgedRound:
    """Calibrate an LM judge on dev rows of the bank, score `rows`, and map the scores onto selection's scale.

    Selection keeps rows whose `score` reaches `select.threshold`; an LM judge's raw reliability has its
    own scale, so its threshold is calibrated on labelled dev rows and the raw score is mapped by
    `rescale`: a row is kept exactly when its raw score reaches the calibrated threshold. Rows keep the raw
    value as `raw_score`.

    Args:
        rows: The round's generated records.
        cfg: The judge config (kind pointwise or meta-ranking).
        scorer: Option scorer over the judge model.
        bank: Labelled references; `dev_size` of them calibrate the threshold, and `panel` of the rest are
            the references the round's comparisons use.
        template: The policy's prompt template.
        select_threshold: The threshold selection applies to `score`.
        seed: Seed of the dev split and the reference draw.
        preamble: Text opening every judge prompt.

    Returns:
        Judged rows with `score`, `raw_score` and, where an answer exists, `correct`; `judge/...` metrics
        without the prefix; log files by name: `judge-bank.jsonl`, the panel and dev rows with their index,
        and for Meta Ranking `judge-references.jsonl`, per scored row the indices of the references that
        judged it and their comparisons.
    """
    references, dev = split_dev(bank, cfg.dev_size, seed)
    panel = draw_panel(references, cfg.panel, seed)
    judge = build_judge(cfg, template=template, seed=seed, scorer=scorer, references=panel, preamble=preamble)
    metrics: dict[str, float] = {
        "bank_size": float(len(bank)),
        "bank_correct_share": sum(bool(r["correct"]) for r in bank) / len(bank) if bank else math.nan,
        "dev_rows": float(len(dev)),
        "panel_size": float(len(panel)),
    }
    threshold = select_threshold
    passes, seconds = 0, 0.0
    if dev:
        dev_scores = judge.score(dev)
        passes, seconds = judge.forward_passes, judge.seconds
        labels = [bool(r["correct"]) for r in dev]
        threshold = calibrate_threshold(dev_scores, labels, target=cfg.calibrate, precision=cfg.target_precision)
        precision, recall, f1 = keep_stats(dev_scores, labels, threshold)
        metrics.update(dev_keep_precision=precision, dev_keep_recall=recall, dev_keep_f1=f1)
        metrics["dev_auroc"] = auroc(dev_scores, labels)
    judged = judge_records(rows, judge)
    passes, seconds = passes + judge.forward_passes, seconds + judge.seconds
    for row in judged:
        row["raw_score"] = row["score"]
        row["score"] = rescale(row["raw_score"], threshold, select_threshold)
    graded = [row for row in judged if "correct" in row]
    if graded:
        raw, labels = [r["raw_score"] for r in graded], [bool(r["correct"]) for r in graded]
        metrics["auroc"] = auroc(raw, labels)
        metrics.update({f"error_{k}": v for k, v in error_detection(raw, labels, threshold).items()})
    metrics.update(threshold=threshold, forward_passes=float(passes), seconds=seconds)
    metrics["seconds_per_sample"] = seconds / max(len(rows), 1)
    logs = {
        "judge-bank.jsonl": [{"role": "panel", "index": i, **r} for i, r in enumerate(panel)]
        + [{"role": "dev", "index": i, **r} for i, r in enumerate(dev)]
    }
    if isinstance(judge, MetaRankingJudge):
        logs["judge-references.jsonl"] = judge.log_rows(rows)
    return JudgedRound(rows=judged, metrics=metrics, logs=logs)


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

    LM judges load the judge model (`tasks.judging.build.judge_model`), build the reference bank from
    earlier rounds under `workdir` (or a file), calibrate their threshold and write `judge-bank.jsonl` and
    (Meta Ranking) `judge-references.jsonl` (which references judged which sample) beside the judged rows.
    Reward-model judges (reward-model, all-of) use `judge.reward_model`, or train one into `reward-model/`
    beside the judged rows (`tasks.train_reward.round_reward_model`). With `judge.cascade`, prompts whose
    best response scores below `select.threshold` get the stronger model's answer as an extra row.
    """
    cfg = config.judge
    rows = read_records(generated)
    seed = config.seed * 1000 + ctx.step
    template = config.prompts.template
    if cfg.kind == "verifier":
        result = JudgedRound(rows=judge_records(rows, build_judge(cfg, template=template)))
    elif cfg.kind in ("reward-model", "all-of"):
        set_torch_threads(config.model.torch_threads)
        reward_dir = Path(out_path).with_name("reward-model")
        path, metrics, facts = round_reward_model(
            config, rows, policy, workdir, reward_dir, round_index=ctx.step, seed=seed, progress=emit
        )
        judge = build_judge(cfg, template=template, reward_model=path)
        judged = judge_records(rows, judge)
        metrics.update(forward_passes=float(judge.forward_passes), seconds=judge.seconds)
        result = JudgedRound(rows=judged, metrics=metrics, facts=facts)
    else:
        set_torch_threads(config.model.torch_threads)
        scorer, judge_ref = load_option_scorer(config, policy)
        bank, facts = build_bank(cfg, rows, workdir, ctx.step, seed)
        preamble = few_shot_prefix(config) if cfg.examples else ""
        scored = judge_with_llm(
            rows,
            cfg,
            scorer,
            bank,
            template=template,
            select_threshold=config.select.threshold,
            seed=seed,
            preamble=preamble,
        )
        result = JudgedRound(scored.rows, scored.metrics, {**facts, "judge_model": judge_ref}, scored.logs)
        for name, records in result.logs.items():
            write_records(Path(out_path).with_name(name), records)
            ctx.log_artifact(Path(out_path).with_name(name), "data")
        del scorer
    judged, metrics = result.rows, dict(result.metrics)
    if cfg.cascade is not None:
        judged, routed = add_cascade(config, judged, seed)
        metrics["routed_share"] = routed / max(len({row["id"] for row in judged}), 1)
        metrics["routed"] = float(routed)
    ref = write_records(out_path, judged)
    write_lineage(Path(out_path), generated=generated, judge=cfg, **result.facts)
    summary = judge_summary(judged, config.select.threshold)
    ctx.log_metrics({f"judge/{k}": v for k, v in {**summary, **metrics}.items()})
    ctx.log_dataset(ref, name=f"round-{ctx.step}-judged", context="judged")
    return ref
