"""The judge report: score one labelled set with several judges and compare them as error detectors.

The labelled set is split by problem (a prompt's rewordings together) into a reference bank (Meta Ranking's
references), a calibration split (Meta Ranking measures its references' vote weights there), a validation split
(every judge's threshold is calibrated there) and a test split (every figure is measured there), so no judge is
measured on data it was tuned or referenced on. Figures per judge, on test: precision, recall and F1 of flagging
wrong responses at the calibrated threshold, the precision of what it keeps, AUROC with a seeded bootstrap 95%
interval (resampling problems, each with all its samples), a paired bootstrap of its AUROC against the pointwise
judge's (difference, interval, p), and cost (forward passes and seconds per judged test item). Two reference rows
bracket them: the verifier (the oracle: its scores are the labels) and keeping everything.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.judging.base import CostedJudge
from tasks.judging.calibration import auroc, calibrate_threshold, error_detection, keep_stats, roc_points
from tasks.records import Record

RESAMPLES = 1000  # bootstrap resamples of the test split
GroupOf = Callable[[Mapping[str, Any]], str]  # a labelled row's problem


def split_by_prompt(
    rows: Sequence[Record], shares: Sequence[float], seed: int, group_of: GroupOf | None = None
) -> tuple[list[Record], ...]:
    """Split labelled rows by problem (`group_of`, e.g. `tasks.prompts.item_problem`; else by prompt text): one part
    per share of the problems (in order), then the rest.

    All samples of one problem, in any wording, land in the same part, so a judge never sees a test problem
    elsewhere (as a reference, or where it was calibrated). `shares=(0.25, 0.125, 0.125)` gives (bank,
    calibration, validation, test).
    """
    group = group_of or _prompt_text
    problems = sorted({group(row) for row in rows})
    random.Random(seed).shuffle(problems)
    bounds, total = [], 0
    for share in shares:
        total += round(share * len(problems))
        bounds.append(total)
    part = {p: sum(i >= b for b in bounds) for i, p in enumerate(problems)}
    out: tuple[list[Record], ...] = tuple([] for _ in range(len(shares) + 1))
    for row in rows:
        out[part[group(row)]].append(row)
    return out


def _prompt_text(row: Mapping[str, Any]) -> str:
    return str(row["prompt"])


def bootstrap_aurocs(
    score_sets: Sequence[Sequence[float]],
    labels: Sequence[bool],
    resamples: int = RESAMPLES,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """AUROC of each score set on the same `resamples` seeded resamples (paired), ties counting half: of the rows,
    or with `groups` (each row's problem) of the groups, every row of a drawn group with it (a cluster bootstrap:
    the k samples of one problem are not k independent rows).

    Returns:
        Array (score sets, resamples); NaN for a resample holding one class only.
    """
    from scipy.stats import rankdata

    y_all = np.asarray([bool(v) for v in labels])
    n = len(y_all)
    index = _resampled_rows(n, resamples, seed, groups)
    y = y_all[index]
    n1 = y.sum(axis=1).astype(float)
    n0 = n - n1
    valid = (n1 > 0) & (n0 > 0)
    out = np.full((len(score_sets), resamples), np.nan)
    for k, scores in enumerate(score_sets):
        ranks = rankdata(np.asarray(scores, dtype=float)[index], axis=1)  # average ranks: ties count half
        u = (ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2
        out[k, valid] = u[valid] / (n1[valid] * n0[valid])
    return out


def _resampled_rows(n: int, resamples: int, seed: int, groups: Sequence[Hashable] | None) -> np.ndarray:
    """Row indices of each resample, (resamples, n): n rows drawn with replacement, or, with `groups`, as many
    groups as there are drawn with replacement, each with all its rows, cut or padded to n by drawing whole groups
    on (so the array is rectangular; a resample's size varies by at most one group's rows around n)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.integers(0, n, size=(resamples, n))
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    clusters = list(members.values())
    out = np.empty((resamples, n), dtype=int)
    for r in range(resamples):
        drawn: list[int] = []
        while len(drawn) < n:
            drawn.extend(clusters[int(rng.integers(0, len(clusters)))])
        out[r] = drawn[:n]
    return out


def auroc_interval(
    scores: Sequence[float], labels: Sequence[bool], seed: int = 0, groups: Sequence[Hashable] | None = None
) -> tuple[float, float]:
    """The bootstrap 95% interval (2.5th, 97.5th percentiles) of AUROC, by `groups` when given
    (`bootstrap_aurocs`); NaNs without both classes."""
    values = bootstrap_aurocs([scores], labels, seed=seed, groups=groups)[0]
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def paired_difference(
    scores: Sequence[float],
    baseline: Sequence[float],
    labels: Sequence[bool],
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, float]:
    """AUROC of `scores` minus the `baseline`'s on the same rows, with a paired bootstrap (by `groups` when given).

    Returns:
        `diff` (on the rows as they are), `low`, `high` (95% interval of the resampled differences) and
        `p`: two-sided, `2 (t + 1) / (B + 1)` at most 1, `t` the resampled differences on the smaller side of 0
        of the `B` (Davison and Hinkley 1997): never 0, since a bootstrap shows p only down to `2 / (B + 1)`.
    """
    both = bootstrap_aurocs([scores, baseline], labels, seed=seed, groups=groups)
    diffs = both[0] - both[1]
    diffs = diffs[~np.isnan(diffs)]
    diff = auroc(scores, labels) - auroc(baseline, labels)
    if not len(diffs):
        return {"diff": diff, "low": math.nan, "high": math.nan, "p": math.nan}
    tail = min(int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0)))
    p = min(1.0, 2 * (tail + 1) / (len(diffs) + 1))
    return {"diff": diff, "low": float(np.percentile(diffs, 2.5)), "high": float(np.percentile(diffs, 97.5)), "p": p}


def figures(
    scores: Sequence[float],
    labels: Sequence[bool],
    threshold: float,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """A judge's test figures from its scores and calibrated threshold (cost not included); the AUROC interval
    by `groups` (each row's problem) when given."""
    found = error_detection(scores, labels, threshold)
    keep_precision, _, _ = keep_stats(scores, labels, threshold)
    low, high = auroc_interval(scores, labels, seed, groups)
    return {
        "threshold": threshold,
        "precision": found["precision"],
        "recall": found["recall"],
        "f1": found["f1"],
        "keep_precision": keep_precision,
        "keep_share": sum(s >= threshold for s in scores) / max(len(scores), 1),
        "auroc": auroc(scores, labels),
        "auroc_low": low,
        "auroc_high": high,
        "scores": list(scores),
    }


def evaluate_judge(
    judge: CostedJudge,
    dev: Sequence[Record],
    test: Sequence[Record],
    *,
    calibration: Sequence[Record] = (),
    target: str = "f1",
    precision: float = 0.9,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """Calibrate `judge` (its reference weights on `calibration`, if it has any; its threshold on `dev`), measure
    it on `test` (its AUROC interval by `groups`, each test row's problem, when given).

    Returns:
        `figures` of the test scores, and `forward_passes_per_sample`, `seconds_per_sample` (test scoring per
        judged item) and `calibration_seconds` (weights and threshold).
    """
    calibration_seconds = 0.0
    calibrate = getattr(judge, "calibrate", None)
    if calibration and calibrate is not None:
        calibrate(calibration)
        calibration_seconds += judge.seconds
    dev_scores = judge.score(dev)
    calibration_seconds += judge.seconds
    labels = [bool(r["correct"]) for r in dev]
    threshold = calibrate_threshold(dev_scores, labels, target=target, precision=precision)  # type: ignore[arg-type]
    started = time.perf_counter()
    scores = judge.score(test)
    seconds = time.perf_counter() - started  # the wall time of judging: judges count their own cost differently
    out = figures(scores, [bool(r["correct"]) for r in test], threshold, seed, groups)
    out["forward_passes_per_sample"] = judge.forward_passes / max(len(test), 1)
    out["seconds_per_sample"] = seconds / max(len(test), 1)
    out["calibration_seconds"] = calibration_seconds
    return out


def bracket_rows(
    labels: Sequence[bool], seed: int = 0, groups: Sequence[Hashable] | None = None
) -> dict[str, dict[str, Any]]:
    """The rows every judge lies between: the verifier as oracle (scores are the labels) and keeping all."""
    rows = {
        "verifier-oracle": figures([1.0 if y else 0.0 for y in labels], labels, 0.5, seed, groups),
        "keep-all": figures([1.0] * len(labels), labels, 0.5, seed, groups),
    }
    for row in rows.values():
        row.update(forward_passes_per_sample=0.0, seconds_per_sample=0.0, calibration_seconds=0.0)
    return rows


def compare_with(
    results: dict[str, dict[str, Any]],
    labels: Sequence[bool],
    baseline: str,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> None:
    """Add to every result but the baseline's its paired AUROC difference to `baseline` (by `groups` when given):
    `vs_<baseline>_diff`, `_low`, `_high`, `_p` (nothing when the baseline was not run)."""
    if baseline not in results:
        return
    for name, r in results.items():
        if name != baseline:
            found = paired_difference(r["scores"], results[baseline]["scores"], labels, seed, groups)
            r.update({f"vs_{baseline}_{k}": v for k, v in found.items()})


def format_table(results: dict[str, dict[str, Any]], test_rows: int, wrong_share: float) -> str:
    """The terminal table: one line per judge (error detection at the calibrated threshold, AUROC and its
    interval, the paired difference to pointwise, cost per judged item). The AUROC column is 22 wide, two more than
    its widest entry ("0.518 [0.286, 0.724]"): at 20 it ran into the next column."""
    header = (
        f"{'judge':<20}{'prec':>6}{'recall':>7}{'F1':>6}{'kept ok':>8}  {'AUROC [95% CI]':<22}"
        f"{'vs pointwise [95% CI], p':<30}{'s/item':>8}"
    )
    lines = [f"error detection on {test_rows} test samples ({wrong_share:.0%} wrong)", header]
    for name, r in results.items():
        interval = f"{_num(r['auroc'])} [{_num(r['auroc_low'])}, {_num(r['auroc_high'])}]"
        versus = ""
        if "vs_pointwise_diff" in r:
            versus = (
                f"{r['vs_pointwise_diff']:+.3f} [{r['vs_pointwise_low']:+.3f}, {r['vs_pointwise_high']:+.3f}], "
                f"{_num(r['vs_pointwise_p'])}"
            )
        lines.append(
            f"{name:<20}{r['precision']:>6.3f}{r['recall']:>7.3f}{r['f1']:>6.3f}{r['keep_precision']:>8.3f}  "
            f"{interval:<22}{versus:<30}{r['seconds_per_sample']:>8.3f}"
        )
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """The same figures as a Markdown table (for benchmarks/results and the README)."""
    lines = [
        "| judge | flag precision | flag recall | flag F1 | kept correct | AUROC [95% CI] | vs pointwise [95% CI] | p "
        "| s/item |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        versus, p = "", ""
        if "vs_pointwise_diff" in r:
            versus = f"{r['vs_pointwise_diff']:+.3f} [{r['vs_pointwise_low']:+.3f}, {r['vs_pointwise_high']:+.3f}]"
            p = _num(r["vs_pointwise_p"])
        lines.append(
            f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['keep_precision']:.3f} | "
            f"{_num(r['auroc'])} [{_num(r['auroc_low'])}, {_num(r['auroc_high'])}] | {versus} | {p} | "
            f"{r['seconds_per_sample']:.3f} |"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def plot_roc(results: dict[str, dict[str, Any]], labels: Sequence[bool], path: str | Path, title: str) -> Path:
    """A PNG of every judge's ROC curve of error detection, with its AUROC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    for name, r in results.items():
        fpr, tpr = roc_points(r["scores"], labels)
        if fpr:
            ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{name} (AUROC {_num(r['auroc'])})")
    ax.set_xlabel("correct responses flagged (false positive rate)")
    ax.set_ylabel("wrong responses flagged (true positive rate)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
