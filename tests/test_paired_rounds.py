"""benchmarks/paired_rounds.py pairs two campaigns' rounds item by item, and refuses different items."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _round(folder: Path, validation: list[int], test: list[int] | None) -> None:
    folder.mkdir(parents=True)
    for name, scores in (("evaluated.jsonl", validation), ("test-evaluated.jsonl", test)):
        if scores is not None:
            rows = [{"id": f"item-{i}", "score": float(s)} for i, s in enumerate(scores)]
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/paired_rounds.py", *args, "--results", str(tmp_path / "out.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_counts_the_discordant_items_per_split(tmp_path: Path) -> None:
    _round(tmp_path / "a" / "round-02", [1, 1, 1, 0], [1, 1, 0, 0])
    _round(tmp_path / "b" / "round-01", [0, 0, 1, 1], [1, 0, 0, 0])
    done = _run(tmp_path, str(tmp_path / "a"), "round-02", str(tmp_path / "b"), "round-01")
    assert done.returncode == 0, done.stderr
    (line,) = (tmp_path / "out.jsonl").read_text().splitlines()
    result = json.loads(line)
    assert result["candidate"] == "a/round-02" and result["reference"] == "b/round-01"
    val, test = result["validation"], result["test"]
    assert (val["only_reference_right"], val["only_candidate_right"]) == (1, 2)
    assert (val["candidate_accuracy"], val["reference_accuracy"]) == (0.75, 0.5)
    assert (test["only_reference_right"], test["only_candidate_right"], test["mcnemar_p"]) == (0, 1, 1.0)
    assert test["difference"] == 0.25


def test_a_round_without_a_test_pass_is_paired_on_validation_only(tmp_path: Path) -> None:
    _round(tmp_path / "a" / "round-01", [1, 0], None)
    _round(tmp_path / "b" / "round-01", [1, 1], [1, 1])
    done = _run(tmp_path, str(tmp_path / "a"), "round-01", str(tmp_path / "b"), "round-01")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out.jsonl").read_text())
    assert "test" not in result and result["validation"]["only_reference_right"] == 1


def test_different_items_are_refused_by_name(tmp_path: Path) -> None:
    _round(tmp_path / "a" / "round-01", [1, 0, 1], None)
    _round(tmp_path / "b" / "round-01", [1, 1], None)
    done = _run(tmp_path, str(tmp_path / "a"), "round-01", str(tmp_path / "b"), "round-01")
    assert done.returncode != 0
    assert "different validation items" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()
