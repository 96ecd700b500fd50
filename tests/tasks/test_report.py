"""The accuracy plot: a PNG is written for rounds with and without an accuracy."""

from pathlib import Path

from tasks.report import plot_accuracy


def test_plot_writes_a_png(tmp_path: Path) -> None:
    rows = [
        {"round": 0, "accuracy": 0.3, "ci_low": 0.2, "ci_high": 0.4, "promoted": True},
        {"round": 1, "accuracy": None, "ci_low": None, "ci_high": None, "promoted": False},
        {"round": 2, "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "promoted": False},
    ]
    path = plot_accuracy(rows, tmp_path / "plots" / "acc.png", "demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
