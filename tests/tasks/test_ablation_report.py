"""Unit tests for the ablation table: rows from campaign summaries and round metrics, text, final accuracy, plot."""

from __future__ import annotations

from pathlib import Path

from tasks.ablation_report import ablation_rows, final_accuracy, format_table, plot_ablation


def sample_rows() -> list[dict]:
    rounds = [
        {"round": 0, "accuracy": 0.3, "promoted": True, "run_id": "parent"},
        {"round": 1, "accuracy": 0.5, "promoted": True, "run_id": "r1"},
        {"round": 2, "accuracy": None, "promoted": False, "run_id": "r2"},
    ]
    metrics = {"parent": {"monitor/distinct_2": 9.0}, "r1": {"monitor/distinct_2": 0.25, "select/rows": 40.0}}
    rounds[1] |= {"test_accuracy": 0.45, "test_ci_low": 0.4, "test_ci_high": 0.5}
    seconds = {"r1": 90.0, "parent": 30.0}
    return ablation_rows("curated", rounds, metrics, seconds) + ablation_rows("all", rounds[:2], {"r1": {}})


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
        "test_accuracy": 0.45,
        "test_ci_low": 0.4,
        "test_ci_high": 0.5,
        "minutes": 1.5,
    }
    assert rows[0]["minutes"] is None  # round 0 is not a round run
    assert rows[-1]["minutes"] is None  # no wall time given


def test_final_accuracy_is_each_arms_last_round() -> None:
    assert final_accuracy(sample_rows()) == {"curated": None, "all": 0.5}


def test_table_text_and_plot(tmp_path: Path) -> None:
    text = format_table(sample_rows())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["arm", "round", "accuracy", "distinct-2"]
    assert lines[2].split()[:4] == ["curated", "1", "0.500", "0.250"]
    assert "0.450 [0.400, 0.500]" in lines[2]
    assert lines[2].split()[-2:] == ["1.5", "yes"]
    assert "final validation accuracy; final test accuracy" in text
    png = plot_ablation(sample_rows(), tmp_path / "a.png", "test")
    assert png.stat().st_size > 1000
