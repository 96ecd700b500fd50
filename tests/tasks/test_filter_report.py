"""The filtering experiment's report (tasks/filter_report.py): each arm's trained policy on test, and the share of the
keep-all-to-oracle gap it closes, computed by hand; a gap too small to divide by is left out and said so."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.filter_report import filter_rows, format_filter_table, gap_closed, gap_note


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
