"""The Gemma ablation's table and plot from finished campaign runs in an MLflow store (issue 13 item 6).

`selftrain ablation configs/experiments/gemma/*.yaml` runs the arms one after another and writes the same table.
On this shared 2-core machine the arms were run as separate `selftrain run` processes side by side (same configs,
same store); this script reads their campaign runs back and writes the table with `tasks.ablation_report`:

    .venv/bin/python benchmarks/gemma_ablation.py --store /path/runs/mlflow.db --out benchmarks/results/ablation_gemma
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlflow.tracking import MlflowClient  # noqa: E402

from flows.ablation_flow import round_seconds  # noqa: E402
from tasks.ablation_report import ablation_rows, format_table, plot_ablation  # noqa: E402


def campaign_rows(client: MlflowClient, parent_id: str) -> tuple[list[dict], dict]:
    """The campaign summary's rows (round, accuracy, promoted, run_id, test figures) rebuilt from MLflow."""

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
    rows = [{"round": 0, "accuracy": val.get(0), "promoted": True, "run_id": parent_id}]
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


def main() -> int:
    """Read every finished campaign in the store's experiment, write table, JSON and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the arms' SQLite MLflow store")
    parser.add_argument("--experiment", default="selftrain-ablation-gemma")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ablation_gemma"))
    ns = parser.parse_args()
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(ns.store).resolve()}")
    experiment = client.get_experiment_by_name(ns.experiment)
    campaigns = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`selftrain.kind` = 'campaign' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    rows: list[dict] = []
    for campaign in campaigns:
        summary, runs = campaign_rows(client, campaign.info.run_id)
        metrics = {run_id: run.data.metrics for run_id, run in runs.items()}
        rows += ablation_rows(campaign.info.run_name, summary, metrics, round_seconds(runs.values()))
    table = format_table(rows)
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(table + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"campaigns": [c.info.run_id for c in campaigns], "rows": rows}, indent=2)
    )
    plot_ablation(rows, out.with_suffix(".png"), "Gemma 3 270M ablation: arms on the same prompts and seeds")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
