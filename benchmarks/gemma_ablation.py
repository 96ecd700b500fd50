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

from benchmarks._mlflow_rows import store_rows  # noqa: E402
from tasks.ablation_report import format_table, plot_ablation  # noqa: E402


def main() -> int:
    """Read every finished campaign in the store's experiment, write table, JSON and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the arms' SQLite MLflow store")
    parser.add_argument("--experiment", default="selftrain-ablation-gemma")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ablation_gemma"))
    ns = parser.parse_args()
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(ns.store).resolve()}")
    rows, campaigns = store_rows(client, ns.experiment)
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
