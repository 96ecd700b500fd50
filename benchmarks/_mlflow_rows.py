"""Reading finished campaigns back from an MLflow store as ablation rows, for the benchmark reports.

`benchmarks/gemma_ablation.py` and `benchmarks/filter_experiment.py` report on arms run as separate processes
(each with its store), some stopped before an ablation wrote `ablation.json`; they rebuild the table from the
store instead. Only FINISHED campaign runs count. A store another process is writing is never opened: `snapshot`
copies it with SQLite's online backup through a read-only connection, and MLflow opens the copy.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.ablation_flow import round_seconds
from tasks.ablation_report import ablation_rows


def snapshot(store: Path, folder: Path) -> Path:
    """A consistent copy of the SQLite store `store` in `folder` (the source is opened read-only, never written).

    Raises:
        ValueError: the store file does not exist.
    """
    if not store.is_file():
        raise ValueError(f"--store {store}: no such SQLite file")
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"{store.parent.name}-{store.name}"
    source = sqlite3.connect(f"file:{store.resolve()}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return copy


def campaign_rows(client: MlflowClient, parent_id: str) -> tuple[list[dict[str, Any]], dict[str, Run]]:
    """The campaign summary's rows (round, accuracy, promoted, run_id, test figures) rebuilt from MLflow, and the
    round runs by run id."""

    def history(key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(parent_id, key)}

    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    by_round = {int(r.data.params["round"]): r for r in children}
    val, test, low, high = (
        history("val/accuracy"),
        history("test/accuracy"),
        history("test/ci_low"),
        history("test/ci_high"),
    )
    rows: list[dict[str, Any]] = [{"round": 0, "accuracy": val.get(0), "promoted": True, "run_id": parent_id}]
    for index in sorted(by_round):
        run = by_round[index]
        rows.append(
            {
                "round": index,
                "accuracy": run.data.metrics.get("val/accuracy"),
                "promoted": run.data.tags.get("selftrain.promoted") == "true",
                "run_id": run.info.run_id,
            }
        )
    for row in rows:
        if row["round"] in test:
            row |= {
                "test_accuracy": test[row["round"]],
                "test_ci_low": low[row["round"]],
                "test_ci_high": high[row["round"]],
            }
    return rows, {r.info.run_id: r for r in by_round.values()}


def finished_campaigns(client: MlflowClient, experiment: str) -> list[Run]:
    """The FINISHED campaign runs of `experiment`, oldest first.

    Raises:
        ValueError: the store has no such experiment.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"experiment {experiment!r}: not in the store {client.tracking_uri}")
    return client.search_runs(
        [found.experiment_id],
        filter_string="tags.`selftrain.kind` = 'campaign' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )


def store_rows(client: MlflowClient, experiment: str) -> tuple[list[dict[str, Any]], list[Run]]:
    """`tasks.ablation_report.ablation_rows` of every FINISHED campaign of `experiment` (arm = the run's name),
    and those campaign runs (their tag `selftrain.dir` names the campaign folder)."""
    campaigns = finished_campaigns(client, experiment)
    rows: list[dict[str, Any]] = []
    for campaign in campaigns:
        summary, runs = campaign_rows(client, campaign.info.run_id)
        metrics = {run_id: run.data.metrics for run_id, run in runs.items()}
        rows += ablation_rows(campaign.info.run_name, summary, metrics, round_seconds(runs.values()))
    return rows, campaigns
