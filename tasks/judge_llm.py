"""An LLM judge in a round: its reference bank, its calibrated threshold, and the scores selection reads.

Selection keeps rows whose `score` reaches `select.threshold`. An LLM judge's raw reliability has its
own scale, so its threshold is calibrated on labelled dev rows, and the raw score is then mapped
monotonically (piecewise linear, 0 -> 0, calibrated threshold -> select.threshold, 1 -> 1) onto the
scale selection reads: a row is kept exactly when its raw score reaches the calibrated threshold. Rows
keep the raw value as `raw_score`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from configs.schema import JudgeConfig
from models.option_scorer import OptionScorer
from tasks.calibrate import auroc, calibrate_threshold, error_detection, keep_stats
from tasks.judge import is_correct, judge_records
from tasks.meta_ranking import MetaRankingJudge, PointwiseJudge
from tasks.records import Record
from tasks.reference_bank import bank_from_rounds, draw_panel, load_bank_file, split_dev


def rescale(raw: float, threshold: float, target: float) -> float:
    """Map a raw score so that `threshold` lands on `target`, monotonically, keeping [0, 1] in [0, 1].

    `rescale(raw) >= target` holds exactly when `raw >= threshold`.
    """
    if raw >= threshold:
        if threshold >= 1.0:
            return max(target, min(1.0, raw))
        return min(1.0, target + (raw - threshold) * (1.0 - target) / (1.0 - threshold))
    below = raw * target / threshold if threshold > 0 else 0.0
    return min(below, math.nextafter(target, -math.inf))


def build_bank(
    cfg: JudgeConfig, rows: Sequence[Record], workdir: str | Path | None, round_index: int, seed: int
) -> tuple[list[Record], dict[str, Any]]:
    """The round's reference bank and where it came from.

    bank=file reads `bank_path`; bank=rounds reads earlier rounds' judged rows and, when they hold fewer
    than `bootstrap` references, adds `bootstrap` of this round's rows that have an answer, labelled by
    the verifier.

    Returns:
        (bank, facts) where facts say how many references came from where.
    """
    if cfg.bank == "file":
        bank = load_bank_file(str(cfg.bank_path))[: cfg.bank_size]
        return bank, {"bank_source": "file", "bank_path": cfg.bank_path, "from_file": len(bank)}
    earlier = bank_from_rounds(workdir, round_index, cfg.bank_size) if workdir is not None else []
    facts: dict[str, Any] = {"bank_source": "rounds", "from_rounds": len(earlier), "bootstrapped": 0}
    if len(earlier) < cfg.bootstrap:
        answered = [row for row in rows if row.get("answer") is not None]
        chosen = random.Random(seed).sample(answered, min(cfg.bootstrap, len(answered)))
        extra = [
            {"prompt": r["prompt"], "response": r["response"], "correct": is_correct(r["response"], r["answer"])}
            for r in chosen
        ]
        facts["bootstrapped"] = len(extra)
        earlier = earlier + extra[: max(0, cfg.bank_size - len(earlier))]
    return earlier, facts


def make_llm_judge(
    cfg: JudgeConfig, scorer: OptionScorer, bank: Sequence[Record], *, template: str, seed: int, preamble: str = ""
) -> MetaRankingJudge | PointwiseJudge:
    """The LLM judge `cfg.kind` names, over a loaded scorer (Meta Ranking also needs a bank).

    `preamble` opens every judge prompt (the few-shot examples, with `judge.examples`).
    """
    if cfg.kind == "pointwise":
        return PointwiseJudge(scorer, template=template, preamble=preamble)
    return MetaRankingJudge(
        scorer,
        bank,
        template=template,
        references=cfg.references,
        swap=cfg.swap,
        seed=seed,
        weights=(cfg.weight_correct, cfg.weight_wrong),
        preamble=preamble,
    )


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
) -> tuple[list[Record], dict[str, float], dict[str, list[Record]]]:
    """Calibrate on dev rows of the bank, score `rows`, and map the scores onto selection's scale.

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
        (judged rows with `score`, `raw_score` and, where an answer exists, `correct`; `judge/...` metrics
        without the prefix; log files by name: `judge-bank.jsonl`, the panel and dev rows with their index,
        and for Meta Ranking `judge-references.jsonl`, per scored row the
        indices of the references that judged it and their comparisons).
    """
    references, dev = split_dev(bank, cfg.dev_size, seed)
    panel = draw_panel(references, cfg.panel, seed)
    judge = make_llm_judge(cfg, scorer, panel, template=template, seed=seed, preamble=preamble)
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
    return judged, metrics, logs
