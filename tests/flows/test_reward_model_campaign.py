"""The tiny campaign filtering with a reward model, end to end through the real CLI, Prefect and MLflow: round 2's
reward model learns only from round 1's labelled rows, and its keep-threshold is calibrated on held-out ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tasks.judging.calibration import rescale
from tests.cli import run_cli

pytestmark = pytest.mark.slow


def test_reward_model_campaign_trains_on_earlier_rounds_and_calibrates(tmp_path: Path, cli_env: dict) -> None:
    run_cli(
        [
            "run",
            "tiny",
            "rounds=2",
            "prompts.train_size=16",
            "prompts.validation_size=16",
            "prompts.test_size=16",
            "prompts.ood_size=8",
            "judge.kind=reward-model",
            "judge.reward_epochs=1",
            "judge.dev_size=8",
            "judge.bootstrap=32",
            "train.epochs=1",
            f"tracking.output_dir={tmp_path / 'runs'}",
        ],
        cli_env,
    )
    campaign = next((tmp_path / "runs").glob("tiny-*"))
    round2 = campaign / "round-02"
    lineage = json.loads((round2 / "judged.jsonl.lineage.json").read_text())
    # Round 2 learns from round 1's verifier-labelled samples only (64, less repeated responses), although bootstrap
    # asks for 32 and round 1 has fewer: none of round 2's own samples.
    assert lineage["bank_source"] == "rounds" and 32 < lineage["from_rounds"] <= 64 and lineage["bootstrapped"] == 0
    assert lineage["validation_rows"] >= 8
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-tiny")
    runs = client.search_runs([experiment.experiment_id])
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") and r.data.params.get("round") == "2"]
    metrics = child.data.metrics
    threshold = metrics["judge/threshold"]
    assert metrics["judge/dev_rows"] == lineage["validation_rows"] and metrics["judge/reward_pairs"] > 0
    # Every score is the raw sigmoid mapped by the threshold calibrated on the validation rows.
    judged = [json.loads(line) for line in (round2 / "judged.jsonl").read_text().splitlines()]
    # (Rows another rule zeroes, such as judge.require_work for rows without right working, are left out.)
    mapped = [row for row in judged if row.get("work", True)]
    assert all("raw_score" in row for row in judged) and all(0.0 <= row["raw_score"] <= 1.0 for row in judged)
    assert all(row["score"] == rescale(row["raw_score"], threshold, 0.5) for row in mapped)
