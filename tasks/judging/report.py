"""The judge report: score one labelled set with several judges and compare them as error detectors.

The labelled set is split by prompt into a reference bank (Meta Ranking's references), a dev split (every
judge's threshold is calibrated there) and a test split (every figure is measured there), so no judge
is measured on data it was tuned or referenced on. Figures per judge: precision, recall and F1 of
flagging wrong responses at the calibrated threshold, AUROC, and cost (forward passes and seconds per
test sample).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.judging.base import CostedJudge
from tasks.judging.calibration import auroc, calibrate_threshold, error_detection, roc_points
from tasks.records import Record


def split_by_prompt(rows: Sequence[Record], shares: tuple[float, float], seed: int) -> tuple[list, list, list]:
    """Split labelled rows into (bank, dev, test) by prompt, `shares` of the prompts for bank and dev.

    All samples of one prompt land in the same part, so a judge never sees a test prompt elsewhere.
    """
    prompts = sorted({row["prompt"] for row in rows})
    random.Random(seed).shuffle(prompts)
    n_bank, n_dev = round(shares[0] * len(prompts)), round(shares[1] * len(prompts))
    part = {p: 0 if i < n_bank else 1 if i < n_bank + n_dev else 2 for i, p in enumerate(prompts)}
    out: tuple[list, list, list] = ([], [], [])
    for row in rows:
        out[part[row["prompt"]]].append(row)
    return out


def evaluate_judge(
    judge: CostedJudge, dev: Sequence[Record], test: Sequence[Record], *, target: str = "f1", precision: float = 0.9
) -> dict[str, Any]:
    """Calibrate `judge` on `dev`, measure it on `test`.

    Returns:
        `threshold`, `precision`, `recall`, `f1` (error detection on test), `auroc`, `forward_passes_per_sample`,
        `seconds_per_sample` (test scoring), and `scores` (the test scores, for the ROC plot).
    """
    dev_scores = judge.score(dev)
    threshold = calibrate_threshold(dev_scores, [bool(r["correct"]) for r in dev], target=target, precision=precision)  # type: ignore[arg-type]
    scores = judge.score(test)
    labels = [bool(r["correct"]) for r in test]
    found = error_detection(scores, labels, threshold)
    return {
        "threshold": threshold,
        "precision": found["precision"],
        "recall": found["recall"],
        "f1": found["f1"],
        "auroc": auroc(scores, labels),
        "forward_passes_per_sample": judge.forward_passes / max(len(test), 1),
        "seconds_per_sample": judge.seconds / max(len(test), 1),
        "scores": scores,
    }


def format_table(results: dict[str, dict[str, Any]], test_rows: int, wrong_share: float) -> str:
    """The terminal table: one line per judge."""
    header = f"{'judge':<22}{'prec':>7}{'recall':>8}{'F1':>7}{'AUROC':>8}{'passes/s.':>11}{'sec/sample':>12}"
    lines = [f"error detection on {test_rows} test samples ({wrong_share:.0%} wrong)", header]
    for name, r in results.items():
        lines.append(
            f"{name:<22}{r['precision']:>7.3f}{r['recall']:>8.3f}{r['f1']:>7.3f}{_num(r['auroc']):>8}"
            f"{r['forward_passes_per_sample']:>11.3f}{r['seconds_per_sample']:>12.4f}"
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
