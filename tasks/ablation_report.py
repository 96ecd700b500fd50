"""Ablation report: one table row per (arm, round) with validation and test accuracy, diversity and wall time,
as text and as a plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from tasks.stats import accuracy_cell  # noqa: E402

# (metric key on a round's MLflow run, table column); generation monitors describe the policy entering the round.
ROUND_METRICS = [
    ("monitor/distinct_2", "distinct-2"),
    ("monitor/embedding_similarity", "emb sim"),
    ("monitor/negative_flip_rate", "neg flips"),
    ("select/rows", "train rows"),
    ("train/pairs", "dpo pairs"),
]


def ablation_rows(
    arm: str,
    rounds: Sequence[Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, float]],
    seconds_by_run: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The table rows of one arm.

    Args:
        arm: The arm's name (its campaign name).
        rounds: The campaign summary's rows (`round`, `accuracy`, `promoted`, `run_id`).
        metrics_by_run: MLflow metrics of each round run, by run id (round 0 lives on the campaign run and has
            no round metrics).
        seconds_by_run: wall time of each round run, by run id (its MLflow start to end); None: not known.

    Returns:
        `{"arm", "round", "accuracy", "promoted", <column>: value or None, "test_accuracy", "test_ci_low",
        "test_ci_high", "minutes"}` per round (the test values None where the round's policy was not scored on
        test; minutes None for round 0 and where the wall time is not known).
    """
    out = []
    for row in rounds:
        metrics = metrics_by_run.get(row["run_id"], {}) if row["round"] > 0 else {}
        cells = {label: metrics.get(key) for key, label in ROUND_METRICS}
        head = {"arm": arm, "round": row["round"], "accuracy": row["accuracy"], "promoted": row["promoted"]}
        tested = {key: row.get(key) for key in ("test_accuracy", "test_ci_low", "test_ci_high")}  # None: not scored
        seconds = (seconds_by_run or {}).get(row["run_id"]) if row["round"] > 0 else None
        out.append(head | cells | tested | {"minutes": seconds / 60 if seconds is not None else None})
    return out


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of `ablation_rows` output (validation accuracy, round metrics, test accuracy with
    its 95% interval, minutes per round), then each arm's final validation and test accuracy."""
    columns = ["accuracy"] + [label for _, label in ROUND_METRICS]
    width = max([len("arm")] + [len(str(row["arm"])) for row in rows])
    head = f"{'arm':<{width}}  round  " + "  ".join(f"{c:>10}" for c in columns)
    lines = [f"{head}  {'test [95% CI]':<21}  {'minutes':>7}  promoted"]
    for row in rows:
        cells = "  ".join(_cell(row.get(c)) for c in columns)
        minutes = f"{row['minutes']:7.1f}" if row.get("minutes") is not None else f"{'-':>7}"
        promoted = "yes" if row["promoted"] else "no"
        test = accuracy_cell(row, "test_")
        lines.append(f"{row['arm']:<{width}}  {row['round']:>5}  {cells}  {test:<21}  {minutes}  {promoted:>8}")
    lines.append("")
    lines.append(f"{'arm':<{width}}  final validation accuracy; final test accuracy [95% CI] (last round's policy)")
    last = {row["arm"]: row for row in rows}
    for arm, value in final_accuracy(rows).items():
        lines.append(f"{arm:<{width}}  {_cell(value).strip()}; {accuracy_cell(last[arm], 'test_')}")
    return "\n".join(lines)


def final_accuracy(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each arm's accuracy at its last round (rows in round order), in first-seen arm order."""
    final: dict[str, float | None] = {}
    for row in rows:
        final[row["arm"]] = row["accuracy"]
    return final


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>10}"
    return f"{value:>10.3f}"


def plot_ablation(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> Path:
    """Three panels by round, one line per arm: validation accuracy, test accuracy with its 95% interval (where
    scored), and distinct-2 of the round's generations."""
    fig, (acc_ax, test_ax, div_ax) = plt.subplots(1, 3, figsize=(13, 3.8), dpi=120)
    for arm in dict.fromkeys(row["arm"] for row in rows):
        mine = [row for row in rows if row["arm"] == arm]
        shown = [row for row in mine if row["accuracy"] is not None]
        acc_ax.plot([r["round"] for r in shown], [r["accuracy"] for r in shown], marker="o", label=arm)
        tested = [row for row in mine if row.get("test_accuracy") is not None]
        if tested:
            mid = [r["test_accuracy"] for r in tested]
            spread = [
                [m - r["test_ci_low"] for m, r in zip(mid, tested, strict=True)],
                [r["test_ci_high"] - m for m, r in zip(mid, tested, strict=True)],
            ]
            test_ax.errorbar([r["round"] for r in tested], mid, yerr=spread, marker="o", capsize=3, label=arm)
        diverse = [row for row in mine if row.get("distinct-2") is not None]
        div_ax.plot([r["round"] for r in diverse], [r["distinct-2"] for r in diverse], marker="o", label=arm)
    acc_ax.set(xlabel="round (0 = starting policy)", ylabel="validation accuracy", ylim=(0, 1))
    test_ax.set(xlabel="round (0 = starting policy)", ylabel="test accuracy, 95% interval", ylim=(0, 1))
    div_ax.set(xlabel="round (generations of the policy entering it)", ylabel="distinct-2")
    for ax in (acc_ax, test_ax, div_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target
