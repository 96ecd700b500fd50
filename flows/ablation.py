"""`selftrain ablation [CONFIG...]`: run several recipes on the same prompts and seeds, then compare them.

Each config is one arm (default: every YAML under configs/experiments/). The arms run one after the other
as ordinary campaigns; an ablation run in MLflow holds the table, the plot and per-arm metrics, and every
campaign run is tagged `selftrain.ablation_run_id` with its id.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from configs.loader import ConfigError, load_config
from configs.schema import CampaignConfig

EXPERIMENTS = Path(__file__).resolve().parent.parent / "configs" / "experiments"
SHARED = ("seed", "rounds", "prompts", "generate", "evaluate", "model")  # what every arm must agree on


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `selftrain ablation`."""
    parser.add_argument("configs", nargs="*", help="arm configs (default: every configs/experiments/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every arm")
    parser.add_argument("--name", default="ablation", help="name of the ablation run")


def check_comparable(configs: list[CampaignConfig]) -> None:
    """Raise ValueError unless the arms share seed, rounds, prompts, sampling, evaluation and model."""
    for key in SHARED:
        values = {json.dumps(getattr(c, key).model_dump() if key in SHARED[2:] else getattr(c, key)) for c in configs}
        if len(values) > 1:
            raise ValueError(f"arms differ in {key!r}: an ablation compares recipes on the same prompts and seeds")
    if len({c.name for c in configs}) < len(configs):
        raise ValueError("arm names (config `name`) must differ")


def main(ns: argparse.Namespace) -> int:
    """Run every arm, print and log the table; 2 on a bad config."""
    paths = ns.configs or sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    try:
        configs = [load_config(path, ns.set) for path in paths]
        check_comparable(configs)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"selftrain ablation: error: {err}", file=sys.stderr)
        return 2
    run_ablation(configs, ns.name)
    return 0


def run_ablation(configs: list[CampaignConfig], name: str) -> dict:
    """Run the arms, then write `ablation.json`, `table.txt` and `ablation.png` and log them to MLflow."""
    from flows.cli import run
    from tasks.ablation_report import ablation_rows, final_accuracy, format_table, plot_ablation
    from tasks.tracking import client_for, end_run, log_artifact, log_metrics, set_tags, start_run

    tracking = configs[0].tracking
    folder = Path(tracking.output_dir).resolve() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    arms = {c.name: c for c in configs}
    parent = start_run(tracking, name, params={"arms": ",".join(arms)}, tags={"selftrain.kind": "ablation"})
    try:
        rows, campaigns = [], {}
        for arm, config in arms.items():
            summary = run(config)
            campaigns[arm] = summary["parent_run_id"]
            set_tags(config.tracking, summary["parent_run_id"], {"selftrain.ablation_run_id": parent})
            client = client_for(config.tracking)
            metrics = {r["run_id"]: client.get_run(r["run_id"]).data.metrics for r in summary["rounds"][1:]}
            rows += ablation_rows(arm, summary["rounds"], metrics)
        table = format_table(rows)
        print(f"\nAblation {name!r}: held-out accuracy and diversity per round\n{table}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "table.txt").write_text(table + "\n")
        (folder / "ablation.json").write_text(json.dumps({"campaigns": campaigns, "rows": rows}, indent=2))
        plot_ablation(rows, folder / "ablation.png", f"{name}: {', '.join(arms)}")
        for row in rows:
            values = {f"{row['arm']}/{k}": row[k] for k in ("accuracy", "distinct-2") if row.get(k) is not None}
            log_metrics(tracking, [parent], values, row["round"])
        set_tags(tracking, parent, {f"selftrain.campaign.{arm}": run_id for arm, run_id in campaigns.items()})
        for file in ("table.txt", "ablation.json", "ablation.png"):
            log_artifact(tracking, parent, folder / file)
    except BaseException:
        end_run(tracking, parent, "FAILED")
        raise
    end_run(tracking, parent)
    print(f"\nAblation run {parent}; table and plot in {folder}")
    return {"run_id": parent, "folder": str(folder), "final": final_accuracy(rows), "rows": rows}
