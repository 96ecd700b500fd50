"""Campaign report: the held-out accuracy curve by round, drawn as a PNG and logged with the campaign."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from tasks.tracking import RunContext  # noqa: E402


def plot_accuracy(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Draw accuracy per round with its 95% interval; promoted rounds filled, rejected ones hollow.

    Args:
        rows: one dict per round with `round`, `accuracy`, `ci_low`, `ci_high`, `promoted`
            (rounds whose training was skipped have accuracy None and are left out).
        path: the PNG to write.
        title: the plot title (the campaign name).
    """
    shown = [r for r in rows if r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    xs = [r["round"] for r in shown]
    ys = [r["accuracy"] for r in shown]
    low = [r["accuracy"] - r["ci_low"] for r in shown]
    high = [r["ci_high"] - r["accuracy"] for r in shown]
    ax.errorbar(xs, ys, yerr=[low, high], color="tab:blue", capsize=4, lw=1.5, zorder=1)
    for r in shown:
        face = "tab:blue" if r["promoted"] else "white"
        ax.scatter([r["round"]], [r["accuracy"]], s=46, facecolors=face, edgecolors="tab:blue", zorder=2)
    ax.set_xticks(xs)
    ax.set_xlabel("round (0 = starting policy)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title}: held-out accuracy, 95% interval (hollow = not promoted)", fontsize=9)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


@task(name="report", cache_policy=NO_CACHE)
def report_task(rows: list[dict[str, Any]], out_path: str, title: str, ctx: RunContext) -> str:
    """Draw the accuracy plot and log it on the campaign run."""
    path = plot_accuracy(rows, out_path, title)
    ctx.log_artifact(path)
    return str(path)
