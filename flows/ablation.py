"""`selftrain ablation [CONFIG...]`: run several recipes on the same prompts and seeds, then compare them.

Each config is one arm (default: every YAML under configs/experiments/), checked like `selftrain run`'s.
The ablation is a Prefect flow whose arms run one after the other as campaign subflows (so the Prefect UI
shows the ablation with its campaigns and rounds beneath it); an ablation run in MLflow holds the table, the
plot and per-arm metrics, and every campaign run is tagged `selftrain.ablation_run_id` with its id. An
interrupted ablation resumes with the same command: finished arms start anew, the interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow

from configs.loader import ConfigError
from configs.schema import CampaignConfig
from flows.launch import checked_config, launch, print_campaign, quiet_progress_bars

if TYPE_CHECKING:
    from mlflow.entities import Run

EXPERIMENTS = Path(__file__).resolve().parent.parent / "configs" / "experiments"
SHARED = ("seed", "rounds", "prompts", "generate", "evaluate", "model")  # what every arm must agree on
# Parts of a shared section that are recipe, not setting: STaR rationalization samples the failed prompts again
# with a hint, on top of the same k samples every arm draws.
RECIPE_FIELDS = {"generate": ("rationalize", "hint")}


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `selftrain ablation`."""
    parser.add_argument("configs", nargs="*", help="arm configs (default: every configs/experiments/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every arm")
    parser.add_argument("--name", default="ablation", help="name of the ablation run")


def check_comparable(configs: list[CampaignConfig]) -> None:
    """Raise ValueError unless the arms share seed, rounds, prompts, sampling, evaluation and model."""
    for key in SHARED:
        values = {json.dumps(_shared(c, key)) for c in configs}
        if len(values) > 1:
            raise ValueError(f"arms differ in {key!r}: an ablation compares recipes on the same prompts and seeds")
    if len({c.name for c in configs}) < len(configs):
        raise ValueError("arm names (config `name`) must differ")


def round_seconds(runs: Iterable[Run]) -> dict[str, float]:
    """Wall time of each finished round run (MLflow start to end), by run id."""
    return {r.info.run_id: (r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time}


def _shared(config: CampaignConfig, key: str) -> object:
    """The part of `config`'s field `key` that every arm must agree on."""
    value = getattr(config, key)
    if key not in SHARED[2:]:
        return value
    dumped = value.model_dump()
    return {k: v for k, v in dumped.items() if k not in RECIPE_FIELDS.get(key, ())}


def main(ns: argparse.Namespace) -> int:
    """Check every arm as `selftrain run` does, run the ablation flow, print and log the table; 2 on a bad
    config (before anything is recorded)."""
    paths = ns.configs or sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    try:
        configs = [checked_config([path, *ns.set]) for path in paths]
        check_comparable(configs)
    except (ConfigError, ValueError, OSError) as err:
        print(f"selftrain ablation: error: {err}", file=sys.stderr)
        return 2
    quiet_progress_bars()
    sets = [item for override in ns.set for item in ("--set", override)]
    launch(lambda: ablation_flow(configs, ns.name), resume=["ablation", *ns.configs, *sets, "--name", ns.name])
    return 0


@flow(name="selftrain-ablation", flow_run_name="{name}")
def ablation_flow(configs: list[CampaignConfig], name: str = "ablation") -> dict:
    """Run the arms as campaign subflows, then write `ablation.json`, `table.txt` and `ablation.png` and log
    them to MLflow; return the ablation run id, its folder, the final accuracies and the table's rows."""
    # Imported here, not at the top: every `selftrain` command line imports this module (flows/cli.py), and the
    # campaign flow loads torch, transformers and MLflow.
    from flows.campaign import campaign_flow
    from flows.interrupt import is_interruption
    from tasks.ablation_report import ablation_rows, final_accuracy, format_table, plot_ablation
    from tasks.tracking import end_run, log_artifact, log_metrics, set_tags, start_run
    from tasks.tracking_store import client_for

    tracking = configs[0].tracking
    folder = Path(tracking.output_dir).resolve() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    arms = {c.name: c for c in configs}
    parent = start_run(tracking, name, params={"arms": ",".join(arms)}, tags={"selftrain.kind": "ablation"})
    try:
        rows, campaigns = [], {}
        for arm, config in arms.items():
            summary = campaign_flow(config)
            print_campaign(config, summary)
            campaigns[arm] = summary["parent_run_id"]
            set_tags(config.tracking, summary["parent_run_id"], {"selftrain.ablation_run_id": parent})
            client = client_for(config.tracking)
            runs = {r["run_id"]: client.get_run(r["run_id"]) for r in summary["rounds"][1:]}
            metrics = {run_id: run.data.metrics for run_id, run in runs.items()}
            rows += ablation_rows(arm, summary["rounds"], metrics, round_seconds(runs.values()))
        table = format_table(rows)
        print(f"\nAblation {name!r}: validation and test accuracy, diversity and minutes per round\n{table}")
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
    except BaseException as error:
        end_run(tracking, parent, "KILLED" if is_interruption(error) else "FAILED")  # as the campaign's runs
        raise
    end_run(tracking, parent)
    print(f"\nAblation run {parent}; table and plot in {folder}")
    return {"run_id": parent, "folder": str(folder), "final": final_accuracy(rows), "rows": rows}
