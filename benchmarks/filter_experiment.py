"""The filtering experiment (issue 14 item 3): which selection, seeing no verifier, makes the best training data?

Runs `selftrain ablation` on the arms under configs/experiments/filter/ (by default all nine: keep-all, oracle,
meta-ranking, pointwise, reward-model, perplexity, confidence, color, dsir; one round from the base Gemma),
then writes the report of `tasks.filter_report`: test accuracy of each arm's trained policy with its 95%
interval, the share of the keep-all-to-oracle gap each arm closes, and each arm's exact McNemar test against
keep-all and the oracle on the same test items (from `round-NN/test-evaluated.jsonl` of the reported round in
each campaign folder). With `--from` it only reports on an ablation that already ran (its `ablation.json`; the
paired columns need the campaign folders, which an older `ablation.json` does not record). With `--store` it
reports on the FINISHED campaigns of experiment `selftrain-filter` in one or more MLflow SQLite stores (arms run
as separate processes, some stopped before an ablation summary was written), read from read-only snapshots.

Writes `<out>.json` and `<out>.txt` (default `benchmarks/results/filter_experiment`). Usage:
    .venv/bin/python benchmarks/filter_experiment.py [--arms keep-all oracle ...] [--set key=value ...]
        [--name filter] [--out benchmarks/results/filter_experiment_gemma] [--from runs/filter-.../ablation.json]
    .venv/bin/python benchmarks/filter_experiment.py --store A/mlflow.db --store B/mlflow.db --out /tmp/filter
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.filter_report import add_paired, filter_rows, format_filter_table  # noqa: E402
from tasks.layout import CampaignLayout  # noqa: E402
from tasks.records import read_records  # noqa: E402
from tasks.tracking import git_commit  # noqa: E402

ARMS = REPO / "configs" / "experiments" / "filter"


def run_ablation(arms: list[str], sets: list[str], name: str) -> Path:
    """Run `selftrain ablation` on the arms (by short name) and return its `ablation.json`."""
    configs = [str(ARMS / f"filter-{arm}.yaml") for arm in arms]
    overrides = [arg for item in sets for arg in ("--set", item)]
    selftrain = str(Path(sys.executable).parent / "selftrain")
    subprocess.run([selftrain, "ablation", *configs, *overrides, "--name", name], cwd=REPO, check=True)
    output = next((s.split("=", 1)[1] for s in sets if s.startswith("tracking.output_dir=")), "runs")
    root = Path(output) if Path(output).is_absolute() else REPO / output
    return max(root.glob(f"{name}-*/ablation.json"), key=lambda p: p.stat().st_mtime)


def from_stores(stores: list[str], experiment: str) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Rows, campaign run ids and folders by arm, of every FINISHED campaign of `experiment` in the stores
    (each read from a snapshot: the stores may be in use)."""
    from mlflow.tracking import MlflowClient

    from benchmarks._mlflow_rows import snapshot, store_rows

    rows: list[dict] = []
    campaigns: dict[str, str] = {}
    dirs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="filter-stores-") as scratch:
        for index, store in enumerate(stores):
            copy = snapshot(Path(store), Path(scratch) / str(index))
            found, runs = store_rows(MlflowClient(tracking_uri=f"sqlite:///{copy}"), experiment)
            rows += found
            for run in runs:  # one FINISHED campaign per arm: a second would mix two policies in one arm
                if run.info.run_name in campaigns:
                    raise ValueError(
                        f"--store {store}: arm {run.info.run_name} has a second FINISHED campaign "
                        f"({campaigns[run.info.run_name]} and {run.info.run_id})"
                    )
                campaigns[run.info.run_name] = run.info.run_id
                dirs[run.info.run_name] = run.data.tags.get("selftrain.dir", "")
    return rows, campaigns, dirs


def arm_credit(table: list[dict], dirs: dict[str, str]) -> dict[str, list[dict] | None]:
    """Each arm's evaluated test rows of the round its table row reports, None where the file is missing."""
    credit: dict[str, list[dict] | None] = {}
    for row in table:
        folder = dirs.get(row["arm"])
        path = CampaignLayout(Path(folder)).evaluated(row["round"], "test") if folder else None
        credit[row["arm"]] = read_records(path) if path is not None and path.is_file() else None
    return credit


def main() -> int:
    """Run (or read) the ablation, print the table and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arms", nargs="*", default=[p.stem.removeprefix("filter-") for p in sorted(ARMS.glob("*.yaml"))]
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every arm")
    parser.add_argument("--name", default="filter")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "filter_experiment"))
    parser.add_argument("--from", dest="source", help="report on this ablation.json instead of running one")
    parser.add_argument("--store", action="append", default=[], help="report on this MLflow SQLite store's runs")
    parser.add_argument("--experiment", default="selftrain-filter", help="the experiment read with --store")
    ns = parser.parse_args()
    started = time.perf_counter()
    source: Path | None = None
    try:
        if ns.store:
            rows, campaigns, dirs = from_stores(ns.store, ns.experiment)
        else:
            source = Path(ns.source) if ns.source else run_ablation(ns.arms, ns.set, ns.name)
            summary = json.loads(source.read_text())
            rows, campaigns = summary["rows"], summary.get("campaigns", {})
            dirs = summary.get("dirs", {})  # each arm's campaign folder; an older ablation.json has none
        table = filter_rows(rows)
        table = add_paired(table, arm_credit(table, dirs))
    except ValueError as error:  # a missing store, two campaigns of one arm, arms scored on different items
        print(f"filter_experiment: error: {error}", file=sys.stderr)
        return 2
    text = format_filter_table(table)
    print(f"\nFiltering experiment: test accuracy of each arm's trained policy\n{text}")
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    record = {
        "commit": git_commit(),
        "ablation": None if source is None else str(source),
        "stores": [str(Path(store).resolve()) for store in ns.store],
        "overrides": ns.set,
        "seconds": None if ns.source or ns.store else round(time.perf_counter() - started, 1),
        "table": table,
        "rows": rows,
        "campaigns": campaigns,
        "dirs": dirs,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.txt')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
