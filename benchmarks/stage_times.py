"""Wall time of each stage of every round of a finished campaign, read back from its MLflow runs.

Usage (after `selftrain run`, which prints the campaign run id and the tracking URI):

    .venv/bin/python benchmarks/stage_times.py RUN_ID --tracking-uri sqlite:///runs/mlflow.db

The stage timers (`generate/seconds`, `rationalize/seconds`, `train/seconds`, and `val/seconds`, the validation
pass) are measured inside the tasks; a round's wall time is its MLflow run's start-to-end span, so `other` is
everything else in the round: loading the policy for each stage, Prefect task and flow runs, MLflow logging,
judging, selection and the gate.
Writes `benchmarks/results/stage_times.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from mlflow import MlflowClient

STAGES = ["generate/seconds", "rationalize/seconds", "train/seconds", "val/seconds"]


def stage_table(client: MlflowClient, parent_run_id: str) -> list[dict[str, float]]:
    """One row per round: each stage's seconds, the round's wall seconds and the rest."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    rows = []
    for run in children:
        if "selftrain.round" not in run.data.tags or run.info.end_time is None:
            continue
        wall = (run.info.end_time - run.info.start_time) / 1000
        row = {"round": int(run.data.tags["selftrain.round"]), "wall": wall}
        row |= {stage.split("/")[0]: run.data.metrics.get(stage, 0.0) for stage in STAGES}
        row["other"] = wall - sum(row[stage.split("/")[0]] for stage in STAGES)
        rows.append(row)
    return sorted(rows, key=lambda row: row["round"])


def main() -> None:
    """Print the table and write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="the campaign's (parent) MLflow run id")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    ns = parser.parse_args()
    client = MlflowClient(ns.tracking_uri)
    rows = stage_table(client, ns.run_id)
    columns = [stage.split("/")[0] for stage in STAGES] + ["other", "wall"]
    print("round  " + "  ".join(f"{c:>9}" for c in columns) + "   (seconds; share of wall)")
    for row in rows:
        cells = [
            f"{row[c]:>6.1f} {100 * row[c] / row['wall']:>2.0f}%" if c != "wall" else f"{row[c]:>9.1f}" for c in columns
        ]
        print(f"{row['round']:>5}  " + "  ".join(cells))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = Path(__file__).parent / "results" / "stage_times.json"
    out.write_text(json.dumps({"commit": commit, "campaign_run": ns.run_id, "rounds": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
