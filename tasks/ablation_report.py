"""Ablation report: one table row per (arm, round) with validation and test accuracy, diversity and wall time,
each arm's final policy, and the final policies compared item by item, as text, MLflow metrics and a plot.

An arm's final policy is its campaign's champion, the policy the campaign ends with and scores on test
(`flows/campaign.py`): the best promoted round by validation accuracy, ties to the newer, the starting policy
(round 0) counting as promoted (`flows/round.py` `RoundInputs.after`). Validation decides; a round the gate
refused, or promoted within its margin below the best, is never the final figure, even when it is the last.
The final policies are compared with a reference arm's on the same test items (exact McNemar, `tasks/stats.py`)
where their per-item rows are at hand; where they are not, the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from tasks.gate import holds_the_best  # noqa: E402
from tasks.layout import CampaignLayout  # noqa: E402
from tasks.records import Record, read_records  # noqa: E402
from tasks.stats import (  # noqa: E402
    accuracy_cell,
    clustered_interval,
    clustered_mcnemar,
    holm,
    interval_extents,
    item_groups,
    paired_counts,
    paired_credit,
)

# (metric key on a round's MLflow run, table column); generation monitors describe the policy entering the round.
ROUND_METRICS = [
    ("monitor/distinct_2", "distinct-2"),
    ("monitor/embedding_similarity", "emb sim"),
    ("monitor/negative_flip_rate", "neg flips"),
    ("select/rows", "train rows"),
    ("train/pairs", "dpo pairs"),
]
# A policy's figures: validation accuracy and its 95% interval, then test's (None: not scored).
FIGURES = ("accuracy", "ci_low", "ci_high", "test_accuracy", "test_ci_low", "test_ci_high")


def ablation_rows(
    arm: str,
    rounds: Sequence[Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, float]],
    seconds_by_run: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The table rows of one arm.

    Args:
        arm: The arm's name (its campaign name).
        rounds: The campaign summary's rows (`round`, `accuracy`, `promoted`, `run_id`; `ci_low`, `ci_high` and
            the `test_` figures where known).
        metrics_by_run: MLflow metrics of each round run, by run id (round 0 lives on the campaign run and has
            no round metrics); a round's `val/ci_low` and `val/ci_high` stand in for a summary row without them.
        seconds_by_run: wall time of each round run, by run id (its MLflow start to end); None: not known.

    Returns:
        `{"arm", "round", "accuracy", "promoted", <column>: value or None, "ci_low", "ci_high", "test_accuracy",
        "test_ci_low", "test_ci_high", "minutes"}` per round (the interval None where not known, the test values
        None where the round's policy was not scored on test; minutes None for round 0 and where the wall time is
        not known).
    """
    out = []
    for row in rounds:
        metrics = metrics_by_run.get(row["run_id"], {}) if row["round"] > 0 else {}
        cells = {label: metrics.get(key) for key, label in ROUND_METRICS}
        head = {"arm": arm, "round": row["round"], "accuracy": row["accuracy"], "promoted": row["promoted"]}
        interval = {key: _first_known(row.get(key), metrics.get(f"val/{key}")) for key in ("ci_low", "ci_high")}
        tested = {key: row.get(key) for key in FIGURES[3:]}  # None: not scored
        seconds = (seconds_by_run or {}).get(row["run_id"]) if row["round"] > 0 else None
        out.append(head | cells | interval | tested | {"minutes": seconds / 60 if seconds is not None else None})
    return out


def final_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each arm's final policy, its champion (module docstring), in first-seen arm order.

    Args:
        rows: `ablation_rows` output, each arm's rows in round order, round 0 first.

    Returns:
        Per arm `{"round": the champion's round, "last_round", "last_promoted", <FIGURES>: value or None}`.
    """
    champions: dict[str, Mapping[str, Any]] = {}
    best: dict[str, float] = {}
    last: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        arm, accuracy = row["arm"], row["accuracy"]
        last[arm] = row
        if arm not in champions:  # the starting policy: the first champion
            champions[arm], best[arm] = row, accuracy if accuracy is not None else -math.inf
        elif row["promoted"] and accuracy is not None and holds_the_best(accuracy, best[arm]):
            champions[arm], best[arm] = row, max(best[arm], accuracy)
    return {
        arm: {"round": row["round"], "last_round": last[arm]["round"], "last_promoted": last[arm]["promoted"]}
        | {key: row.get(key) for key in FIGURES}
        for arm, row in champions.items()
    }


def final_test_rows(workdir: str | Path, round_index: int) -> list[Record] | None:
    """The per-item test rows of round `round_index`'s policy in a campaign folder; None where it has none."""
    path = CampaignLayout(Path(workdir)).evaluated(round_index, "test")
    return read_records(path) if path.is_file() else None


def paired_finals(
    finals: Mapping[str, Mapping[str, Any]],
    credit: Mapping[str, Sequence[Mapping[str, Any]] | None],
    reference: str,
) -> dict[str, dict[str, Any] | None]:
    """Each arm's final policy against the reference arm's on the same test items (exact McNemar).

    Args:
        finals: `final_figures` output.
        credit: per arm, the per-item test rows (`id`, `score`) of its final policy; None or absent: not at hand.
        reference: the arm compared with.

    Returns:
        Per arm (in `finals` order) `{"reference", "reference_round", "round", "items", "accuracy", "ci_low",
        "ci_high", "reference_accuracy", "b", "c", "p", "p_holm"}` (`b`: items only the reference answered right,
        `c`: only the arm; the interval and p count each problem once where the rows name it, `tasks.stats`;
        `p_holm`: p adjusted by Holm's method over the arms compared, since an ablation tests every arm against
        the reference at once), or None for the reference itself and where either side's rows are not at hand.

    Raises:
        ValueError: `reference` is not an arm, a row lacks `id` or `score`, or two arms' final policies were
            scored on different test items.
    """
    if reference not in finals:
        raise ValueError(f"reference arm {reference!r} is not one of the arms ({', '.join(finals)})")
    theirs = credit.get(reference)
    out: dict[str, dict[str, Any] | None] = {}
    for arm, final in finals.items():
        mine = credit.get(arm)
        if arm == reference or mine is None or theirs is None:
            out[arm] = None
            continue
        ids, cand, ref = paired_credit(mine, theirs, names=(arm, reference, "test"))
        counts, groups = paired_counts(cand, ref), item_groups(theirs, ids)
        low, high = clustered_interval(cand, groups)
        out[arm] = {
            "reference": reference,
            "reference_round": finals[reference]["round"],
            "round": final["round"],
            "items": counts.items,
            "accuracy": counts.candidate_right / max(counts.items, 1),
            "ci_low": low,
            "ci_high": high,
            "reference_accuracy": counts.reference_right / max(counts.items, 1),
            "b": counts.b,
            "c": counts.c,
            "p": clustered_mcnemar(cand, ref, groups),
        }
    compared = [found for found in out.values() if found is not None]
    for found, adjusted in zip(compared, holm([found["p"] for found in compared]), strict=True):
        found["p_holm"] = adjusted
    return out


def format_table(
    rows: Sequence[Mapping[str, Any]],
    paired: Mapping[str, Mapping[str, Any] | None] | None = None,
    reference: str | None = None,
) -> str:
    """A fixed-width text table of `ablation_rows` output (validation and test accuracy with their 95% intervals,
    round metrics, minutes per round), then each arm's final policy (its champion, `final_figures`) and, with
    `paired` (`paired_finals` against `reference`), the final policies compared item by item; without it, a line
    saying the per-item rows were not available."""
    columns = [label for _, label in ROUND_METRICS]
    width = max([len("arm")] + [len(str(row["arm"])) for row in rows])
    head = f"{'arm':<{width}}  round  {'validation [95% CI]':<21}  " + "  ".join(f"{c:>10}" for c in columns)
    lines = [f"{head}  {'test [95% CI]':<21}  {'minutes':>7}  promoted"]
    for row in rows:
        cells = "  ".join(_cell(row.get(c)) for c in columns)
        minutes = f"{row['minutes']:7.1f}" if row.get("minutes") is not None else f"{'-':>7}"
        promoted = "yes" if row["promoted"] else "no"
        val, test = accuracy_cell(row, ""), accuracy_cell(row, "test_")
        lines.append(
            f"{row['arm']:<{width}}  {row['round']:>5}  {val:<21}  {cells}  {test:<21}  {minutes}  {promoted:>8}"
        )
    finals = final_figures(rows)
    lines += [
        "",
        "Final policy: each arm's champion (best promoted round by validation, ties to the newer), scored on test",
        f"{'arm':<{width}}  round  final validation accuracy; final test accuracy, each [95% CI]",
    ]
    for arm, final in finals.items():
        note = ""
        if final["last_round"] != final["round"]:
            why = "promoted below the best" if final["last_promoted"] else "refused"
            note = f"  (last round {final['last_round']}: {why})"
        figures = f"{accuracy_cell(final, '')}; {accuracy_cell(final, 'test_')}"
        lines.append(f"{arm:<{width}}  {final['round']:>5}  {figures}{note}")
    lines += ["", *_paired_lines(finals, paired, reference, width)]
    return "\n".join(lines)


def _paired_lines(
    finals: Mapping[str, Mapping[str, Any]],
    paired: Mapping[str, Mapping[str, Any] | None] | None,
    reference: str | None,
    width: int,
) -> list[str]:
    if paired is None or reference is None:
        return ["Paired comparison: the final policies' per-item test rows are not available to this report."]
    ref_round = finals[reference]["round"] if reference in finals else "?"
    lines = [
        f"Paired on the same test items, each final policy against {reference}'s (round {ref_round}), exact McNemar "
        f"(b: only {reference} right, c: only the arm right)",
        f"{'arm':<{width}}  round  {'test [95% CI]':<21}  {'items':>5}  {'b':>4}  {'c':>4}  {'p':>7}  "
        f"p (Holm over {_count(sum(found is not None for found in paired.values()), 'arm')})",
    ]
    for arm, final in finals.items():
        found = paired.get(arm)
        if arm == reference:
            lines.append(f"{arm:<{width}}  {final['round']:>5}  (the reference)")
        elif found is None:
            lines.append(f"{arm:<{width}}  {final['round']:>5}  - (per-item test rows not available)")
        else:
            test, p = accuracy_cell(found, ""), found["p"]
            counts = f"{found['items']:>5}  {found['b']:>4}  {found['c']:>4}"
            lines.append(f"{arm:<{width}}  {found['round']:>5}  {test:<21}  {counts}  {p:>7.2g}  {found['p_holm']:.2g}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """One table row's MLflow metrics, logged at step = its round: `{arm}/accuracy` with `{arm}/ci_low` and
    `{arm}/ci_high`, the `{arm}/test_*` figures and `{arm}/distinct-2`, each where known."""
    keys = (*FIGURES, "distinct-2")
    return {f"{row['arm']}/{key}": float(row[key]) for key in keys if row.get(key) is not None}


def final_metrics(
    finals: Mapping[str, Mapping[str, Any]], paired: Mapping[str, Mapping[str, Any] | None] | None = None
) -> dict[str, float]:
    """Each arm's final policy as MLflow metrics: `{arm}/final/round`, `{arm}/final/<figure>` where known, and
    `{arm}/final/paired/{b,c,p,p_holm}` where `paired` (`paired_finals`) compared it with the reference."""
    out: dict[str, float] = {}
    for arm, final in finals.items():
        out[f"{arm}/final/round"] = float(final["round"])
        out |= {f"{arm}/final/{key}": float(final[key]) for key in FIGURES if final.get(key) is not None}
        found = (paired or {}).get(arm)
        if found is not None:
            out |= {f"{arm}/final/paired/{key}": float(found[key]) for key in ("b", "c", "p", "p_holm")}
    return out


def _first_known(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


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
            spread = interval_extents(mid, [r["test_ci_low"] for r in tested], [r["test_ci_high"] for r in tested])
            test_ax.errorbar([r["round"] for r in tested], mid, yerr=list(spread), marker="o", capsize=3, label=arm)
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
