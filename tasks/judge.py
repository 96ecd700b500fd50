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

from configs.schema import CampaignConfig, JudgeConfig
from models.loading import set_torch_threads
from models.option_scorer import OptionScorer
from tasks.curriculum import pass_rate_table
from tasks.judging.base import JudgedRound, judge_records
from tasks.judging.build import build_judge, load_option_scorer
from tasks.judging.calibration import auroc, calibrate_threshold, error_detection, keep_stats, rescale
from tasks.judging.cascade import add_cascade
from tasks.judging.label_transfer import LabelTransferJudge
from tasks.judging.meta_ranking import MetaRankingJudge
from tasks.judging.reference_bank import build_bank, draw_panel, split_dev, split_halves_by_prompt
from tasks.judging.verifier import shows_work
from tasks.layout import RESUMABLE
from tasks.progress import emit
from tasks.prompts import few_shot_prefix
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RoundContext
from tasks.train_reward import reward_rows, round_reward_model

PASS_RATES = "pass-rates.jsonl"  # the curriculum's per-prompt pass-rate table, beside the judged rows


def require_work(rows: Sequence[Record], answer_pattern: str) -> tuple[list[Record], dict[str, float]]:
    """Copies of judged rows with `work` (`shows_work`: every stated computation holds and the last result is
    the final answer); a row without right working scores 0, whatever the judge said, so it is never kept.

    Returns:
        The rows, and `work_rate` (share of the policy's samples showing right working) and
        `correct_without_work` (share of the correct samples that did not: guesses, or wrong steps).
    """
    out = []
    for row in rows:
        work = shows_work(row["response"], answer_pattern)
        out.append({**row, "work": work} | ({} if work else {"score": 0.0}))
    own = [row for row in out if not is_cascade(row)]
    right = [row for row in own if row.get("correct")]
    metrics = {
        "work_rate": _share([row["work"] for row in own]),
        "correct_without_work": _share([not row["work"] for row in right]),
    }
    return out, metrics


def is_cascade(row: Record) -> bool:
    """Whether a judged row is the stronger model's answer (`judge.cascade`), not the policy's sample."""
    return row.get("source") == "cascade"


def judge_summary(rows: Sequence[Record], threshold: float) -> dict[str, float]:
    """Round metrics of the policy's judged samples (log under `judge/`); cascade rows are left out.

    Args:
        rows: Judged records (`id`, `score`, and `correct` where the prompt has an answer).
        threshold: The selection threshold, for the accept rate.

    Returns:
        `accept_rate` (share of rows scoring >= threshold), `mean_score`, `accuracy` (share correct
        among rows with an answer), `pass_at_k` (share of prompts with an answer that have at least one
        correct sample) and `prompts` (distinct prompt ids). A share with nothing to count is NaN.
    """
    rows = [row for row in rows if not is_cascade(row)]
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


def cascade_summary(rows: Sequence[Record], routed: int) -> dict[str, float]:
    """Metrics of the stronger model's rows (log under `cascade/`): `routed` prompts, `routed_share` of the
    round's prompts, `rows` added and their `accuracy` (share correct among those with an answer)."""
    prompts = len({row["id"] for row in rows})
    added = [row for row in rows if is_cascade(row)]
    return {
        "routed": float(routed),
        "routed_share": routed / max(prompts, 1),
        "rows": float(len(added)),
        "accuracy": _share([bool(row["correct"]) for row in added if "correct" in row]),
    }


def judge_quality(
    rows: Sequence[Record], fitted: Sequence[Record], threshold: float, score_key: str = "score"
) -> dict[str, float]:
    """How well the judge's scores separate right from wrong, measured only on rows it was not fitted on.

    Rows whose (prompt, response) was used to fit the judge (its threshold's dev rows, its references, a
    reward model's training rows) and cascade rows never count: a judge scored on its own fitting data
    looks better than it is.

    Args:
        rows: Judged rows (`correct` where there is an answer).
        fitted: Rows (`prompt`, `response`) used to fit a threshold, references or a reward model.
        threshold: The keep-threshold on `score_key`; a row below it is flagged as wrong.
        score_key: The score to measure ("raw_score" for a calibrated LM judge).

    Returns:
        `auroc`, `error_precision`, `error_recall`, `error_f1`, `error_flagged_share` and `quality_rows` (the
        rows counted); only `quality_rows` when no row is left.
    """
    seen = {(row["prompt"], row["response"]) for row in fitted}
    counted = [
        row for row in rows if "correct" in row and not is_cascade(row) and (row["prompt"], row["response"]) not in seen
    ]
    metrics = {"quality_rows": float(len(counted))}
    if counted:
        scores, labels = [row[score_key] for row in counted], [bool(row["correct"]) for row in counted]
        metrics["auroc"] = auroc(scores, labels)
        metrics.update({f"error_{k}": v for k, v in error_detection(scores, labels, threshold).items()})
    return metrics


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
        cfg: The judge config (kind pointwise, meta-ranking or label-transfer).
        scorer: Option scorer over the judge model.
        bank: Labelled references; `dev_size` of them calibrate the threshold (Meta Ranking: half of those, by
            prompt, measure the references' vote weights first), and `panel` of the rest are the references
            the round's comparisons use.
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
    calibration: list[Record] = []
    if dev and isinstance(judge, MetaRankingJudge):
        # The references' vote weights are measured on one half of the dev rows, the threshold on the other.
        calibration, dev = split_halves_by_prompt(dev)
        if calibration:
            weights = judge.calibrate(calibration)
            passes, seconds = judge.forward_passes, judge.seconds
            metrics["reference_weight_mean"] = sum(weights) / len(weights)
        metrics["calibration_rows"] = float(len(calibration))
    if dev:
        dev_scores = judge.score(dev)
        passes, seconds = passes + judge.forward_passes, seconds + judge.seconds
        labels = [bool(r["correct"]) for r in dev]
        threshold = calibrate_threshold(dev_scores, labels, target=cfg.calibrate, precision=cfg.target_precision)
        precision, recall, f1 = keep_stats(dev_scores, labels, threshold)
        metrics.update(dev_keep_precision=precision, dev_keep_recall=recall, dev_keep_f1=f1)
        metrics["dev_auroc"] = auroc(dev_scores, labels)
    judged = judge_records(rows, judge, cfg.answer_pattern)
    passes, seconds = passes + judge.forward_passes, seconds + judge.seconds
    for row in judged:
        row["raw_score"] = row["score"]
        row["score"] = rescale(row["raw_score"], threshold, select_threshold)
    # The bank (dev rows that fitted the threshold, and references, which may be this round's own samples)
    # never counts in the judge's reported quality.
    metrics.update(judge_quality(judged, bank, threshold, score_key="raw_score"))
    metrics.update(threshold=threshold, forward_passes=float(passes), seconds=seconds)
    metrics["seconds_per_sample"] = seconds / max(len(rows), 1)
    logs = {
        "judge-bank.jsonl": [{"role": "panel", "index": i, **r} for i, r in enumerate(panel)]
        + [{"role": "calibration", "index": i, **r} for i, r in enumerate(calibration)]
        + [{"role": "dev", "index": i, **r} for i, r in enumerate(dev)]
    }
    if isinstance(judge, MetaRankingJudge | LabelTransferJudge):
        logs["judge-references.jsonl"] = judge.log_rows(rows)
    return JudgedRound(rows=judged, metrics=metrics, logs=logs)


@task(name="judge", **RESUMABLE)
def judge_task(
    config: CampaignConfig,
    generated: DatasetRef,
    out_path: str,
    ctx: RoundContext,
    policy: ModelRef | None = None,
    earlier: Sequence[DatasetRef] = (),
) -> DatasetRef:
    """Score the round's samples, write `judged.jsonl`, log `judge/*` (and `cascade/*`) metrics and the data.

    LM judges load the judge model (`tasks.judging.build.judge_model`), build the reference bank from the
    `earlier` rounds' judged files (or a file), calibrate their threshold and write `judge-bank.jsonl` and
    (Meta Ranking) `judge-references.jsonl` (which references judged which sample) beside the judged rows.
    Reward-model judges (reward-model, all-of) use `judge.reward_model`, or train one into `reward-model/`
    beside the judged rows (`tasks.train_reward.round_reward_model`). With `judge.cascade`, prompts whose
    best response scores below `select.threshold` get the stronger model's answer as an extra row.
    """
    cfg = config.judge
    rows = read_records(generated)
    seed = ctx.seed
    template = config.prompts.template
    if cfg.kind == "verifier":
        result = JudgedRound(rows=judge_records(rows, build_judge(cfg, template=template), cfg.answer_pattern))
    elif cfg.kind in ("reward-model", "all-of"):
        set_torch_threads(config.model.torch_threads)
        reward_dir = Path(out_path).with_name("reward-model")
        path, metrics, facts = round_reward_model(config, rows, policy, earlier, reward_dir, seed=seed, progress=emit)
        judge = build_judge(cfg, template=template, reward_model=path)
        # The rows a reward model trained this round learnt from and its validation rows (as round_reward_model).
        trained_on, validation, _ = reward_rows(cfg, rows, earlier, seed)
        judged = judge_records(rows, judge, cfg.answer_pattern)
        threshold, score_key = config.select.threshold, "score"
        if cfg.kind == "reward-model" and validation:
            # A sigmoid has its own scale: fit the keep-threshold on validation rows, map scores as LM judges do.
            labels = [bool(r["correct"]) for r in validation]
            threshold = calibrate_threshold(
                judge.score(validation), labels, target=cfg.calibrate, precision=cfg.target_precision
            )
            for row in judged:
                row["raw_score"] = row["score"]
                row["score"] = rescale(row["raw_score"], threshold, config.select.threshold)
            score_key = "raw_score"
            metrics.update(threshold=threshold, dev_rows=float(len(validation)))
        metrics.update(forward_passes=float(judge.forward_passes), seconds=judge.seconds)
        fitted = validation + ([] if cfg.reward_model is not None else trained_on)
        metrics.update(judge_quality(judged, fitted, threshold, score_key=score_key))
        result = JudgedRound(rows=judged, metrics=metrics, facts=facts)
    else:
        set_torch_threads(config.model.torch_threads)
        scorer, judge_ref = load_option_scorer(config, policy)
        bank, facts = build_bank(cfg, rows, earlier, seed)
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
    judged, metrics = result.rows, {f"judge/{k}": v for k, v in result.metrics.items()}
    if cfg.cascade is not None:
        judged, routed = add_cascade(config, judged, seed)
        metrics.update({f"cascade/{k}": v for k, v in cascade_summary(judged, routed).items()})
    if config.requires_work:
        judged, work = require_work(judged, cfg.answer_pattern)
        metrics.update({f"judge/{k}": v for k, v in work.items()})
    if config.prompts.curriculum:
        history = [read_records(ref) for ref in earlier] + [judged]
        table = write_records(Path(out_path).with_name(PASS_RATES), pass_rate_table(history, ctx.round - len(earlier)))
        ctx.log_dataset(table, name=f"round-{ctx.round}-pass-rates", context="pass-rates")
    ref = write_records(out_path, judged)
    write_lineage(Path(out_path), generated=generated, judge=cfg, **result.facts)
    summary = judge_summary(judged, config.select.threshold)
    ctx.log_metrics({**{f"judge/{k}": v for k, v in summary.items()}, **metrics})
    ctx.log_dataset(ref, name=f"round-{ctx.round}-judged", context="judged")
    return ref
