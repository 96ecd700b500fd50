"""The filtering experiment's report (tasks/filter_report.py): each arm's trained policy on test, and the share of the
keep-all-to-oracle gap it closes, computed by hand; a gap too small to divide by is left out and said so; each arm's
exact McNemar test against keep-all and the oracle on hand-made per-item credit with known b, c and p."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.filter_report import add_paired, filter_rows, format_filter_table, gap_closed, gap_note


def arm(name: str, start: float, final: float | None, ci: float = 0.05, rows: float = 10.0) -> list[dict[str, Any]]:
    """Round 0 (the base, scored on test) and round 1 (scored only when `final` is given)."""

    def tested(acc: float | None) -> dict[str, Any]:
        low, high = (None, None) if acc is None else (acc - ci, acc + ci)
        return {"test_accuracy": acc, "test_ci_low": low, "test_ci_high": high}

    return [
        {"arm": name, "round": 0, "accuracy": 0.1, "promoted": True, "train rows": None} | tested(start),
        {"arm": name, "round": 1, "accuracy": 0.2, "promoted": True, "train rows": rows} | tested(final),
    ]


def test_gap_closed_by_hand() -> None:
    rows = arm("filter-keep-all", 0.1, 0.30) + arm("filter-oracle", 0.1, 0.50) + arm("filter-dsir", 0.1, 0.45)
    rows += arm("filter-color", 0.1, 0.20) + arm("filter-perplexity", 0.1, None)
    ordered = filter_rows(rows)
    assert [row["arm"] for row in ordered] == [
        "filter-keep-all",
        "filter-dsir",
        "filter-color",
        "filter-perplexity",
        "filter-oracle",
    ]
    table = {row["arm"]: row for row in ordered}
    assert table["filter-dsir"]["gap_closed"] == pytest.approx((0.45 - 0.30) / (0.50 - 0.30))  # 0.75
    assert table["filter-color"]["gap_closed"] == pytest.approx(-0.5)  # worse than keeping everything
    assert table["filter-keep-all"]["gap_closed"] is None and table["filter-oracle"]["gap_closed"] is None
    # Training skipped: the arm's policy is the base, scored at round 0, and said so by its round.
    assert table["filter-perplexity"]["round"] == 0 and table["filter-perplexity"]["test_accuracy"] == 0.1
    assert table["filter-dsir"]["ci_low"] == pytest.approx(0.40) and table["filter-dsir"]["train_rows"] == 10.0
    text = format_filter_table(list(table.values()))
    assert "filter-dsir" in text and "+0.75" in text and "-0.50" in text
    assert "gap oracle - keep-all = +0.200" in text and "overlap" not in text


def test_small_gap_is_not_divided() -> None:
    assert gap_closed(0.4, 0.30, 0.31) is None
    assert gap_closed(0.4, 0.30, 0.32) == pytest.approx(5.0)
    rows = arm("filter-keep-all", 0.1, 0.30) + arm("filter-oracle", 0.1, 0.31) + arm("filter-dsir", 0.1, 0.4)
    table = filter_rows(rows)
    assert all(row["gap_closed"] is None for row in table)
    assert "too small to divide by" in gap_note(table)
    wide = filter_rows(arm("filter-keep-all", 0.1, 0.30, ci=0.1) + arm("filter-oracle", 0.1, 0.4, ci=0.1))
    assert "intervals overlap" in gap_note(wide)


def credit(right: set[int], items: int = 14) -> list[dict[str, Any]]:
    """Evaluated test rows of items 0..items-1, credit 1.0 on `right` (0.0 elsewhere)."""
    return [{"id": f"test-{i}", "score": 1.0 if i in right else 0.0} for i in range(items)]


def test_paired_tests_by_hand() -> None:
    table = filter_rows(
        arm("filter-keep-all", 0.0, 4 / 14)
        + arm("filter-oracle", 0.0, 12 / 14)
        + arm("filter-dsir", 0.0, 10 / 14)
        + arm("filter-color", 0.0, 0.5)
    )
    keep, dsir = set(range(4)), set(range(10))
    oracle = set(range(9)) | {10, 11, 12}  # right where dsir is wrong on 3 items, wrong where dsir is right on 1
    paired = {
        row["arm"]: row
        for row in add_paired(
            table,
            {
                "filter-keep-all": credit(keep),
                "filter-oracle": credit(oracle),
                "filter-dsir": credit(dsir),
                "filter-color": None,
            },
        )
    }
    # dsir right on everything keep-all is, plus 6 more: b=0, c=6, p = 2 * 0.5**6.
    assert paired["filter-dsir"]["vs_keep_all"] == {"b": 0, "c": 6, "p": pytest.approx(0.03125), "items": 14}
    # b=3, c=1: P(X <= 1) + P(X >= 3) for X ~ Bin(4, 0.5) = (1 + 4 + 4 + 1) / 16.
    assert paired["filter-dsir"]["vs_oracle"] == {"b": 3, "c": 1, "p": pytest.approx(0.625), "items": 14}
    assert paired["filter-oracle"]["vs_keep_all"] == {"b": 0, "c": 8, "p": pytest.approx(2 * 0.5**8), "items": 14}
    assert paired["filter-keep-all"]["vs_keep_all"] is None and paired["filter-oracle"]["vs_oracle"] is None
    assert paired["filter-color"]["vs_keep_all"] is None and paired["filter-color"]["vs_oracle"] is None  # no credit
    text = format_filter_table(list(paired.values()))
    assert "vs keep-all b/c p" in text and "vs oracle b/c p" in text
    dsir_line = next(line for line in text.splitlines() if line.startswith("filter-dsir"))
    assert dsir_line.endswith("0/6 0.0312           3/1 0.625")
    assert "exact two-sided McNemar" in text


def test_paired_tests_refuse_different_items_and_say_when_missing() -> None:
    table = filter_rows(arm("filter-keep-all", 0.0, 0.3) + arm("filter-dsir", 0.0, 0.4))
    with pytest.raises(ValueError, match="filter-dsir and filter-keep-all were scored on different test items"):
        add_paired(table, {"filter-keep-all": credit({1}, items=14), "filter-dsir": credit({1}, items=12)})
    text = format_filter_table(add_paired(table, {}))
    assert "paired tests: not computed" in text
    assert text.splitlines()[2].endswith("-                   -")
