"""The filtering experiment's report: test accuracy per arm with its 95% interval, and the share of the
keep-all-to-oracle gap each arm closes.

The arms (configs/experiments/filter/) differ only in how selection picks training rows without the verifier;
`keep-all` trains on every sample (the floor) and `oracle` on the verifier's choice (the ceiling). An arm's
share of the gap is (arm - keep-all) / (oracle - keep-all) on test accuracy; when the oracle does not beat
keep-all by at least `min_gap` the ratio would divide by noise, so it is left out with a note saying so.

Every arm is scored on the same test items, so each is also compared with keep-all and with the oracle item by
item (`add_paired`): `b` items the reference answered right and the arm wrong, `c` the reverse, and the exact
McNemar p-value of the two (`tasks.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tasks.stats import clustered_mcnemar, interval_text, item_groups, paired_counts, paired_credit

KEEP_ALL, ORACLE = "filter-keep-all", "filter-oracle"
MIN_GAP = 0.02  # below this (absolute test accuracy) the gap is too small to divide by


def final_tested(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per arm (first-seen order), its last row scored on test after training (round > 0); an arm whose trained
    policy was never scored (training skipped) falls back to its round 0 row, marked by its round."""
    out: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row.get("test_accuracy") is None:
            continue
        if row["round"] > 0 or row["arm"] not in out:
            out[row["arm"]] = row
    return out


def gap_closed(arm: float, keep_all: float, oracle: float, min_gap: float = MIN_GAP) -> float | None:
    """(arm - keep_all) / (oracle - keep_all); None when oracle - keep_all is below `min_gap`."""
    gap = oracle - keep_all
    return None if gap < min_gap else (arm - keep_all) / gap


def filter_rows(rows: Sequence[Mapping[str, Any]], min_gap: float = MIN_GAP) -> list[dict[str, Any]]:
    """One row per arm, keep-all first and the oracle last (the others in input order): `arm`, `round` (of the
    policy scored), `test_accuracy`, `ci_low`, `ci_high`, `train_rows` (rows selected in its last round) and
    `gap_closed` (None for the two ends, or a gap too small).

    Args:
        rows: `tasks.ablation_report.ablation_rows` of every arm (with the test columns).
        min_gap: The smallest oracle - keep-all difference divided by.
    """
    tested = final_tested(rows)
    order = sorted(tested, key=lambda name: (name != KEEP_ALL, name == ORACLE))  # stable: the rest keep their order
    final = {name: tested[name] for name in order}
    train_rows = {row["arm"]: row.get("train rows") for row in rows if row["round"] > 0}
    ends = (final.get(KEEP_ALL), final.get(ORACLE))
    out = []
    for arm, row in final.items():
        closed = None
        if ends[0] is not None and ends[1] is not None and arm not in (KEEP_ALL, ORACLE):
            closed = gap_closed(row["test_accuracy"], ends[0]["test_accuracy"], ends[1]["test_accuracy"], min_gap)
        out.append(
            {
                "arm": arm,
                "round": row["round"],
                "test_accuracy": row["test_accuracy"],
                "ci_low": row.get("test_ci_low"),
                "ci_high": row.get("test_ci_high"),
                "train_rows": train_rows.get(arm),
                "gap_closed": closed,
            }
        )
    return out


def paired_test(
    candidate: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]], names: tuple[str, str]
) -> dict[str, Any]:
    """Exact McNemar of two policies' credit on the same test items, each problem counted once
    (`tasks.stats.clustered_mcnemar`): `{"b", "c", "p", "items"}`.

    Args:
        candidate: the arm's evaluated test rows (`id`, `score`, and `problem` where the task names it).
        reference: the reference arm's evaluated test rows on the same items.
        names: the two arms' names, for the error.

    Raises:
        ValueError: a row lacks `id` or `score`, or the two were scored on different items.
    """
    ids, cand, ref = paired_credit(candidate, reference, names=(names[0], names[1], "test"))
    counts = paired_counts(cand, ref)
    p = clustered_mcnemar(cand, ref, item_groups(reference, ids))
    return {"b": counts.b, "c": counts.c, "p": p, "items": counts.items}


def add_paired(
    table: Sequence[Mapping[str, Any]], credit: Mapping[str, Sequence[Mapping[str, Any]] | None]
) -> list[dict[str, Any]]:
    """`filter_rows` with `vs_keep_all` and `vs_oracle` on each row: the `paired_test` of the arm's reported
    policy against keep-all's and the oracle's, or None for the arm itself or where either side's per-item
    credit is missing.

    Args:
        table: `filter_rows` output.
        credit: per arm, the evaluated test rows of the policy its row reports (the round in its `round`);
            None or absent: not available.
    """
    out = []
    for row in table:
        arm, mine = row["arm"], credit.get(row["arm"])
        paired: dict[str, Any] = {}
        for column, reference in (("vs_keep_all", KEEP_ALL), ("vs_oracle", ORACLE)):
            theirs = credit.get(reference)
            paired[column] = None
            if arm != reference and mine is not None and theirs is not None:
                paired[column] = paired_test(mine, theirs, (arm, reference))
        out.append(dict(row) | paired)
    return out


def gap_note(table: Sequence[Mapping[str, Any]], min_gap: float = MIN_GAP) -> str:
    """One sentence on the keep-all-to-oracle gap: its size and whether the two intervals overlap."""
    by_arm = {row["arm"]: row for row in table}
    if KEEP_ALL not in by_arm or ORACLE not in by_arm:
        return f"no gap: the table needs both {KEEP_ALL} and {ORACLE}"
    low, high = by_arm[KEEP_ALL], by_arm[ORACLE]
    gap = high["test_accuracy"] - low["test_accuracy"]
    if gap < min_gap:
        return (
            f"gap oracle - keep-all = {gap:+.3f} is below {min_gap}: too small to divide by, so no share of it "
            "is reported"
        )
    overlap = low["ci_high"] is not None and high["ci_low"] is not None and low["ci_high"] >= high["ci_low"]
    caveat = "; their 95% intervals overlap, so each share is noisy" if overlap else ""
    return f"gap oracle - keep-all = {gap:+.3f}{caveat}"


def format_filter_table(table: Sequence[Mapping[str, Any]], min_gap: float = MIN_GAP) -> str:
    """A fixed-width text table of `filter_rows` (with the paired columns of `add_paired` where present: "-" where
    not), then the gap note and a line on the paired tests."""
    width = max([len("arm")] + [len(row["arm"]) for row in table])
    head = f"{'arm':<{width}}  round  test acc  95% CI          train rows  gap closed"
    lines = [f"{head}  {'vs keep-all b/c p':>18}  {'vs oracle b/c p':>18}"]
    for row in table:
        ci = "-" if row["ci_low"] is None else interval_text((row["ci_low"], row["ci_high"]))
        rows = "-" if row["train_rows"] is None else f"{row['train_rows']:.0f}"
        closed = "-" if row["gap_closed"] is None else f"{row['gap_closed']:+.2f}"
        paired = "  ".join(f"{_paired_cell(row.get(column)):>18}" for column in ("vs_keep_all", "vs_oracle"))
        lines.append(
            f"{row['arm']:<{width}}  {row['round']:>5}  {row['test_accuracy']:8.3f}  {ci:<14}  {rows:>10}  {closed:>10}"
            f"  {paired}"
        )
    lines += ["", gap_note(table, min_gap), paired_note(table)]
    return "\n".join(lines)


def paired_note(table: Sequence[Mapping[str, Any]]) -> str:
    """One sentence saying what the paired columns hold, or that no per-item test credit was available."""
    if not any(row.get(column) for row in table for column in ("vs_keep_all", "vs_oracle")):
        return "paired tests: not computed (no per-item test credit of the arms' campaign folders was available)"
    return (
        "paired tests on the same test items: b = the reference (keep-all or oracle) right and the arm wrong, "
        "c = the reverse; p = exact two-sided McNemar"
    )


def _paired_cell(test: Mapping[str, Any] | None) -> str:
    return "-" if test is None else f"{test['b']}/{test['c']} {test['p']:.3g}"
