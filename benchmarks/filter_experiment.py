"""The filtering experiment (issue 14 item 3): which selection, seeing no verifier, makes the best training data?

Runs `selftrain ablation` on the arms under configs/experiments/filter/ (by default all nine: keep-all, oracle,
meta-ranking, pointwise, reward-model, perplexity, confidence, color, dsir; one round from the base Gemma),
then writes the report of `tasks.filter_report`: test accuracy of each arm's trained policy with its 95%
interval, and the share of the keep-all-to-oracle gap each arm closes. With `--from` it only reports on an
ablation that already ran (its `ablation.json`).

Writes `<out>.json` and `<out>.txt` (default `benchmarks/results/filter_experiment`). Usage:
    .venv/bin/python benchmarks/filter_experiment.py [--arms keep-all oracle ...] [--set key=value ...]
        [--name filter] [--out benchmarks/results/filter_experiment_gemma] [--from runs/filter-.../ablation.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.filter_report import filter_rows, format_filter_table  # noqa: E402
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
    ns = parser.parse_args()
    started = time.perf_counter()
    source = Path(ns.source) if ns.source else run_ablation(ns.arms, ns.set, ns.name)
    summary = json.loads(source.read_text())
    table = filter_rows(summary["rows"])
    text = format_filter_table(table)
    print(f"\nFiltering experiment: test accuracy of each arm's trained policy\n{text}")
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    record = {
        "commit": git_commit(),
        "ablation": str(source),
        "overrides": ns.set,
        "seconds": None if ns.source else round(time.perf_counter() - started, 1),
        "table": table,
        "rows": summary["rows"],
        "campaigns": summary.get("campaigns", {}),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.txt')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
