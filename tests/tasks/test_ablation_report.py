"""Unit tests for the ablation table: rows from campaign summaries and round metrics, text, each arm's final
policy (its champion, not its last round), the paired comparison of the final policies, MLflow metrics, plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.ablation_report import (
    ablation_rows,
    final_figures,
    final_metrics,
    final_test_rows,
    format_table,
    paired_finals,
    plot_ablation,
    row_metrics,
)
from tasks.stats import wilson_interval


def sample_rows() -> list[dict]:
    rounds: list[dict[str, Any]] = [
        {"round": 0, "accuracy": 0.3, "promoted": True, "run_id": "parent"},
        {"round": 1, "accuracy": 0.5, "promoted": True, "run_id": "r1"},
        {"round": 2, "accuracy": None, "promoted": False, "run_id": "r2"},
    ]
    metrics = {"parent": {"monitor/distinct_2": 9.0}, "r1": {"monitor/distinct_2": 0.25, "select/rows": 40.0}}
    rounds[1] |= {"test_accuracy": 0.45, "test_ci_low": 0.4, "test_ci_high": 0.5}
    seconds = {"r1": 90.0, "parent": 30.0}
    return ablation_rows("curated", rounds, metrics, seconds) + ablation_rows("all", rounds[:2], {"r1": {}})


def refused_last_round() -> list[dict]:
    """The audit's case: arm A's round 2 is refused (0.55 after 0.80); arm B's promoted round 2 is its best."""
    start = {"round": 0, "promoted": True, "run_id": "p", "accuracy": 0.30, "ci_low": 0.24, "ci_high": 0.37}
    start |= {"test_accuracy": 0.31, "test_ci_low": 0.25, "test_ci_high": 0.38}
    a = [
        start,
        {"round": 1, "promoted": True, "run_id": "r1", "accuracy": 0.80, "ci_low": 0.74, "ci_high": 0.85}
        | {"test_accuracy": 0.79, "test_ci_low": 0.73, "test_ci_high": 0.84},
        {"round": 2, "promoted": False, "run_id": "r2", "accuracy": 0.55, "ci_low": 0.48, "ci_high": 0.62},
    ]
    b = [
        dict(start),
        {"round": 1, "promoted": True, "run_id": "s1", "accuracy": 0.70, "ci_low": 0.63, "ci_high": 0.76},
        {"round": 2, "promoted": True, "run_id": "s2", "accuracy": 0.72, "ci_low": 0.65, "ci_high": 0.78}
        | {"test_accuracy": 0.71, "test_ci_low": 0.64, "test_ci_high": 0.77},
    ]
    return ablation_rows("armA", a, {}) + ablation_rows("armB", b, {})


def arm(name: str, accuracies: list[float | None], promoted: list[bool]) -> list[dict]:
    rounds = [
        {"round": i, "accuracy": acc, "promoted": ok, "run_id": f"{name}{i}", "test_accuracy": i / 10}
        for i, (acc, ok) in enumerate(zip(accuracies, promoted, strict=True))
    ]
    return ablation_rows(name, rounds, {})


def test_rows_take_round_metrics_but_none_for_round_zero() -> None:
    rows = sample_rows()
    assert rows[0]["distinct-2"] is None  # round 0 is the campaign run: no generations of its own
    assert rows[1] == {
        "arm": "curated",
        "round": 1,
        "accuracy": 0.5,
        "promoted": True,
        "distinct-2": 0.25,
        "emb sim": None,
        "neg flips": None,
        "train rows": 40.0,
        "dpo pairs": None,
        "ci_low": None,
        "ci_high": None,
        "test_accuracy": 0.45,
        "test_ci_low": 0.4,
        "test_ci_high": 0.5,
        "minutes": 1.5,
    }
    assert rows[0]["minutes"] is None  # round 0 is not a round run
    assert rows[-1]["minutes"] is None  # no wall time given


def test_validation_interval_from_the_summary_else_the_round_run() -> None:
    rounds = [
        {"round": 0, "accuracy": 0.3, "ci_low": 0.2, "ci_high": 0.4, "promoted": True, "run_id": "p"},
        {"round": 1, "accuracy": 0.5, "promoted": True, "run_id": "r1"},  # as rebuilt from a store
    ]
    metrics = {"p": {"val/ci_low": 0.0}, "r1": {"val/ci_low": 0.41, "val/ci_high": 0.59}}
    rows = ablation_rows("a", rounds, metrics)
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == (0.2, 0.4)
    assert (rows[1]["ci_low"], rows[1]["ci_high"]) == (0.41, 0.59)


def test_a_refused_last_round_reports_the_champions_figures() -> None:
    finals = final_figures(refused_last_round())
    assert finals["armA"] == {
        "round": 1,
        "last_round": 2,
        "last_promoted": False,
        "accuracy": 0.80,
        "ci_low": 0.74,
        "ci_high": 0.85,
        "test_accuracy": 0.79,
        "test_ci_low": 0.73,
        "test_ci_high": 0.84,
    }
    assert finals["armB"]["round"] == 2 and finals["armB"]["test_accuracy"] == 0.71


def test_the_table_names_the_champions_round_and_intervals() -> None:
    text = format_table(refused_last_round())
    final = text.split("Final policy")[1].splitlines()
    assert "final validation accuracy; final test accuracy" in final[1]
    assert final[2].split()[:2] == ["armA", "1"]
    assert "0.800 [0.740, 0.850]; 0.790 [0.730, 0.840]" in final[2]
    assert "last round 2: refused" in final[2]
    assert "0.550" not in "\n".join(final)
    assert final[3].split()[:2] == ["armB", "2"] and "0.710 [0.640, 0.770]" in final[3]
    assert "last round" not in final[3]  # its champion is its last round
    assert "per-item test rows are not available to this report" in text  # no paired block invented


def test_champion_is_the_best_promoted_round_ties_to_the_newer() -> None:
    rows = (
        arm("below", [0.0, 0.6, 0.5], [True, True, True])  # promoted within the margin, below the best
        + arm("tie", [0.0, 0.55, 0.55], [True, True, True])
        + arm("none", [0.2, 0.1, None], [True, False, False])  # no round promoted: the starting policy
    )
    finals = final_figures(rows)
    assert {name: final["round"] for name, final in finals.items()} == {"below": 1, "tie": 2, "none": 0}
    assert finals["below"]["test_accuracy"] == 0.1
    assert "last round 2: promoted below the best" in format_table(rows)


def test_final_figures_of_the_sample() -> None:
    finals = final_figures(sample_rows())
    assert finals["curated"]["round"] == 1 and finals["curated"]["test_accuracy"] == 0.45
    assert finals["all"]["round"] == 1 and finals["all"]["accuracy"] == 0.5


def scored(rights: str) -> list[dict]:
    return [{"id": f"q{i}", "score": float(ch == "1")} for i, ch in enumerate(rights)]


def test_paired_finals_counts_discordant_items_and_tests_them() -> None:
    finals = final_figures(refused_last_round())
    reference, candidate = scored("1111000000"), scored("0111111110")  # b = 1 (q0), c = 5 (q4-q8)
    paired = paired_finals(finals, {"armA": reference, "armB": candidate}, "armA")
    assert paired["armA"] is None  # the reference itself
    found = paired["armB"]
    assert found is not None
    assert (found["items"], found["b"], found["c"]) == (10, 1, 5)
    assert found["p"] == pytest.approx(14 / 64)  # two-sided exact: 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert found["accuracy"] == 0.8 and found["reference_accuracy"] == 0.4
    assert (found["ci_low"], found["ci_high"]) == pytest.approx(wilson_interval(8, 10))
    assert (found["round"], found["reference"], found["reference_round"]) == (2, "armA", 1)
    text = format_table(refused_last_round(), paired, "armA")
    block = text.split("Paired on the same test items")[1].splitlines()
    assert "against armA's (round 1)" in block[0]
    assert "(the reference)" in block[2]
    assert block[1].endswith("p  p (Holm over 1 arm)")
    assert block[3].split() == ["armB", "2", "0.800", "[0.490,", "0.943]", "10", "1", "5", "0.22", "0.22"]
    assert found["p_holm"] == found["p"]  # one arm compared: nothing to adjust


def test_paired_finals_adjust_p_over_the_arms_compared() -> None:
    rows = [
        {"arm": arm, "round": 1, "accuracy": 0.5, "promoted": True, "test_accuracy": 0.5}
        for arm in ("ref", "strong", "weak", "absent")
    ]
    finals = final_figures(rows)
    credit = {"ref": scored("0" * 12), "strong": scored("1" * 10 + "00"), "weak": scored("1" * 4 + "0" * 8)}
    paired = paired_finals(finals, credit, "ref")  # "absent" has no rows: not one of the family
    strong, weak = paired["strong"], paired["weak"]
    assert strong is not None and weak is not None and paired["absent"] is None
    assert (strong["p"], weak["p"]) == pytest.approx((2 * 0.5**10, 2 * 0.5**4))
    assert (strong["p_holm"], weak["p_holm"]) == pytest.approx((2 * strong["p"], weak["p"]))
    assert final_metrics(finals, paired)["weak/final/paired/p_holm"] == pytest.approx(0.125)


def test_paired_finals_without_rows_or_on_other_items() -> None:
    finals = final_figures(refused_last_round())
    assert paired_finals(finals, {"armA": scored("10")}, "armA") == {"armA": None, "armB": None}
    assert paired_finals(finals, {"armB": scored("10")}, "armA") == {"armA": None, "armB": None}
    with pytest.raises(ValueError, match="different test items"):
        paired_finals(finals, {"armA": scored("10"), "armB": scored("101")}, "armA")
    with pytest.raises(ValueError, match="reference arm 'armC'"):
        paired_finals(finals, {}, "armC")
    text = format_table(refused_last_round(), {"armA": None, "armB": None}, "armA")
    assert "armB      2  - (per-item test rows not available)" in text


def test_final_test_rows_reads_the_champions_test_answers(tmp_path: Path) -> None:
    (tmp_path / "round-01").mkdir()
    (tmp_path / "round-01" / "test-evaluated.jsonl").write_text(json.dumps({"id": "q0", "score": 1.0}) + "\n")
    assert [row["id"] for row in final_test_rows(tmp_path, 1) or []] == ["q0"]
    assert final_test_rows(tmp_path, 2) is None


def test_mlflow_metrics_carry_intervals_and_the_final_policy() -> None:
    rows = refused_last_round()
    assert row_metrics(rows[1]) == {
        "armA/accuracy": 0.80,
        "armA/ci_low": 0.74,
        "armA/ci_high": 0.85,
        "armA/test_accuracy": 0.79,
        "armA/test_ci_low": 0.73,
        "armA/test_ci_high": 0.84,
    }
    assert set(row_metrics(rows[2])) == {"armA/accuracy", "armA/ci_low", "armA/ci_high"}  # refused: no test
    finals = final_figures(rows)
    paired = {"armA": None, "armB": {"b": 1, "c": 5, "p": 0.21875, "p_holm": 0.21875}}
    metrics = final_metrics(finals, paired)
    assert metrics["armA/final/round"] == 1.0 and metrics["armA/final/test_accuracy"] == 0.79
    assert metrics["armA/final/accuracy"] == 0.80 and metrics["armA/final/ci_high"] == 0.85
    assert metrics["armB/final/paired/c"] == 5.0 and "armA/final/paired/b" not in metrics


def test_table_text_and_plot(tmp_path: Path) -> None:
    text = format_table(sample_rows())
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["arm", "round", "validation", "[95%", "CI]"]
    assert lines[2].split()[:4] == ["curated", "1", "0.500", "0.250"]
    assert "0.450 [0.400, 0.500]" in lines[2]
    assert lines[2].split()[-2:] == ["1.5", "yes"]
    assert "final validation accuracy; final test accuracy" in text
    png = plot_ablation(sample_rows(), tmp_path / "a.png", "test")
    assert png.stat().st_size > 1000
