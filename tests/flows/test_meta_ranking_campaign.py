"""The tiny campaign filtering with Meta Ranking, end to end through the real CLI, Prefect and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.cli import run_cli

pytestmark = pytest.mark.slow


def test_meta_ranking_campaign_runs_and_logs_its_judge(tmp_path: Path, cli_env: dict[str, str]) -> None:
    run_cli(
        [
            "run",
            "configs/tiny-meta-ranking.yaml",
            "rounds=1",
            "prompts.train_size=32",
            "prompts.heldout_size=64",
            # Smaller than the config where nothing below reads it: the test and OOD scores and the second
            # epoch of training come after the judge step this test checks.
            "prompts.test_size=16",
            "prompts.ood_size=8",
            "train.epochs=1",
            f"tracking.output_dir={tmp_path / 'runs'}",
        ],
        cli_env,
        timeout=600,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-tiny-meta-ranking")
    rounds = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mlflow.parentRunId")]
    assert len(rounds) == 1 and rounds[0].info.status == "FINISHED"
    metrics = rounds[0].data.metrics
    # Round 1 has no earlier rounds: its bank is bootstrapped from the round's own verified samples.
    assert metrics["judge/bank_size"] == 64 and metrics["judge/dev_rows"] == 32 and metrics["judge/panel_size"] == 10
    assert 0.0 <= metrics["judge/threshold"] <= 1.0
    assert metrics["judge/forward_passes"] > 0 and 0.0 <= metrics["judge/auroc"] <= 1.0
    data = {Path(a.path).name for a in client.list_artifacts(rounds[0].info.run_id, "data")}
    assert {"judged.jsonl", "judge-bank.jsonl", "judge-references.jsonl"} <= data
    folder = next((tmp_path / "runs").glob("tiny-meta-ranking-*/round-01"))
    judged = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
    log = [json.loads(line) for line in (folder / "judge-references.jsonl").read_text().splitlines()]
    assert len(log) == len(judged) == 32 * 4
    assert all(len(entry["references"]) == 5 and len(entry["p_above"]) == 5 for entry in log)
    assert all(0.0 <= row["score"] <= 1.0 and "raw_score" in row for row in judged)
    lineage = json.loads((folder / "judged.jsonl.lineage.json").read_text())
    assert lineage["bank_source"] == "rounds" and lineage["bootstrapped"] == 64
