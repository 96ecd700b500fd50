"""A tiny campaign with verified resampling (`evaluate.resample_failed_working`) through the real CLI, Prefect and
an MLflow SQLite store: every set is decoded so, the few-shot bar included, and the greedy pair is reported beside."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tasks.records import read_records
from tests.cli import run_cli

pytestmark = pytest.mark.slow


def test_a_resampling_campaign_scores_every_set_so_and_reports_the_greedy_pair(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    sizes = ["prompts.train_size=32", "prompts.validation_size=32", "prompts.test_size=32", "prompts.ood_size=16"]
    shot = ["prompts.few_shot=2", "generate.few_shot_rounds=0", "evaluate.few_shot_baseline=true"]
    proc = run_cli(
        ["run", "configs/tiny.yaml", "rounds=1", f"tracking.output_dir={tmp_path / 'runs'}", *sizes, *shot]
        + ["evaluate.resample_failed_working=2"],
        cli_env,
    )
    assert "the same, both answering greedily (no resampling), test, start -> final:" in proc.stdout
    folder = next((tmp_path / "runs").glob("tiny-*"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-tiny")
    parent = next(
        run
        for run in client.search_runs([experiment.experiment_id])
        if run.data.tags.get("selftrain.kind") == "campaign"
    )
    metrics = parent.data.metrics
    bar = read_records(folder / "round-00" / "test-few-shot-evaluated.jsonl")
    start = read_records(folder / "round-00" / "test-evaluated.jsonl")
    for rows in (bar, start):  # every set, the bar too, kept its greedy answer beside the one it scored
        assert all({"greedy_response", "greedy_correct", "resampled"} <= set(row) for row in rows)
    greedy_bar = sum(row["greedy_correct"] for row in bar) / len(bar)
    assert metrics["test-few-shot/greedy_accuracy"] == pytest.approx(greedy_bar)
    assert metrics["final/vs_few_shot/start_test_accuracy"] == pytest.approx(metrics["test-few-shot/accuracy"])
    assert metrics["final/vs_few_shot/greedy/start_test_accuracy"] == pytest.approx(greedy_bar)
    assert 0.0 <= metrics["final/vs_few_shot/greedy/p_value"] <= 1.0
    assert parent.data.tags["selftrain.final_claim.vs_few_shot.greedy"].startswith("test, start -> final:")
    history = client.get_metric_history(parent.info.run_id, "val/greedy_accuracy")
    assert sorted(m.step for m in history) == [0, 1]  # validation, which decides, is resampled every round
    for version in client.search_model_versions("name='selftrain-tiny'"):  # compared only with its own decoding
        assert version.tags["decoding"] == "greedy, resample_failed_working=2"
