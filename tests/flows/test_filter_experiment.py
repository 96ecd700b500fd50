"""The filtering experiment on the tiny model, cheaply: three arms (keep-all, dsir, oracle), one round of 16 prompts.

benchmarks/filter_experiment.py runs `selftrain ablation` on the arms under configs/experiments/filter/ with the
tiny model swapped in, and writes the report. Checked: the report's numbers come from the campaigns (gap share by
hand), each arm's paired test against keep-all and the oracle is read from the campaigns' per-item test credit (its
b and c agree with the two accuracies), keep-all trains on every sample, the oracle only on verified ones, and the
DSIR arm keeps half of the samples, each selected row saying why (its score, `kept_by`, `reason`) and
`filter-scores.jsonl` holding every judged row's score.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import REPO

TINY = [
    "model.source=tiny",
    "model.torch_threads=1",
    "prompts.few_shot=0",
    "generate.few_shot_rounds=null",
    "prompts.train_size=16",
    "prompts.validation_size=16",
    "prompts.test_size=32",
    "prompts.max_operand=9",
    "generate.k=2",
    "generate.temperature=1.0",
    "generate.max_new_tokens=24",
    "evaluate.max_new_tokens=24",
    "train.lora_r=8",
    "train.lora_alpha=16",
    "train.learning_rate=0.003",
    "train.batch_size=16",
    "train.epochs=1",
    "train.max_length=128",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> dict:
    root = tmp_path_factory.mktemp("filter")
    sets = [*TINY, f"tracking.output_dir={root}"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/filter_experiment.py", "--arms", "keep-all", "dsir", "oracle"]
        + [arg for s in sets for arg in ("--set", s)]
        + ["--name", "ci", "--out", str(root / "report")],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folders = {json.loads(p.read_text())["name"]: p.parent for p in root.glob("*/config.json")}
    return {"report": json.loads((root / "report.json").read_text()), "folders": folders, "stdout": proc.stdout}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_report_holds_each_arms_test_accuracy_and_gap_share(experiment: dict) -> None:
    table = {row["arm"]: row for row in experiment["report"]["table"]}
    assert set(table) == {"filter-keep-all", "filter-dsir", "filter-oracle"}
    assert all(row["round"] == 1 and row["ci_low"] <= row["test_accuracy"] <= row["ci_high"] for row in table.values())
    keep, oracle, dsir = (table[f"filter-{a}"]["test_accuracy"] for a in ("keep-all", "oracle", "dsir"))
    if oracle - keep >= 0.02:
        assert table["filter-dsir"]["gap_closed"] == pytest.approx((dsir - keep) / (oracle - keep))
    else:
        assert table["filter-dsir"]["gap_closed"] is None and "too small to divide by" in experiment["stdout"]
    assert "test acc" in experiment["stdout"] and "gap oracle - keep-all" in experiment["stdout"]


def test_report_pairs_each_arm_with_keep_all_and_the_oracle_item_by_item(experiment: dict) -> None:
    table = {row["arm"]: row for row in experiment["report"]["table"]}
    for name, row in table.items():
        for column, reference in (("vs_keep_all", "filter-keep-all"), ("vs_oracle", "filter-oracle")):
            if name == reference:
                assert row[column] is None
                continue
            test = row[column]
            assert test["items"] == 32 and 0 < test["p"] <= 1
            # c - b is the arm's right answers minus the reference's, on the same 32 items.
            shift = (row["test_accuracy"] - table[reference]["test_accuracy"]) * 32
            assert test["c"] - test["b"] == pytest.approx(shift)
    assert "vs keep-all b/c p" in experiment["stdout"] and "exact two-sided McNemar" in experiment["stdout"]


def test_selection_per_arm_sees_no_verifier_except_the_oracle(experiment: dict) -> None:
    rounds = {arm: folder / "round-01" for arm, folder in experiment["folders"].items()}
    judged = read(rounds["filter-keep-all"] / "judged.jsonl")
    assert len(read(rounds["filter-keep-all"] / "selected.jsonl")) == len(judged) == 32  # every sample, right or wrong
    oracle = read(rounds["filter-oracle"] / "selected.jsonl")
    assert oracle and all(row["score"] == 1.0 for row in oracle)

    dsir_judged = read(rounds["filter-dsir"] / "judged.jsonl")
    selected = read(rounds["filter-dsir"] / "selected.jsonl")
    assert len(selected) == math.ceil(0.5 * len(dsir_judged))
    for row in selected:
        assert isinstance(row["filters"]["dsir"], float) and row["kept_by"] == ["judge", "dsir"]
        assert row["reason"].startswith("judge score ") and "log importance weight" in row["reason"]
    scores = read(rounds["filter-dsir"] / "filter-scores.jsonl")
    assert len(scores) == len(dsir_judged) and sum(row["kept"] for row in scores) == len(selected)
    assert {round(r["filters"]["dsir"], 9) for r in selected} <= {round(r["filters"]["dsir"], 9) for r in scores}
