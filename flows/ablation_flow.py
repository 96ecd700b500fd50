"""The ablation flow: run the arms as campaign subflows, then write, plot and log the comparison table.

`selftrain ablation` (flows/ablation.py) checks the arms and starts this flow; it lives in its own module because
the campaign flow it runs imports torch, transformers and MLflow, which the command line loads only to run it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow

from configs.schema import CampaignConfig
from flows.campaign import campaign_flow
from flows.interrupt import is_interruption
from flows.launch import print_campaign

if TYPE_CHECKING:
    from mlflow.entities import Run


def round_seconds(runs: Iterable[Run]) -> dict[str, float]:
    """Wall time of each finished round run (MLflow start to end), by run id."""
    return {r.info.run_id: (r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time}


@flow(name="selftrain-ablation", flow_run_name="{name}")
def ablation_flow(configs: list[CampaignConfig], name: str = "ablation", reference: str | None = None) -> dict:
    """Run the arms as campaign subflows, then write `ablation.json`, `table.txt` and `ablation.png` and log
    them to MLflow; return the ablation run id, its folder, each arm's final policy (its champion) with its
    paired comparison against the `reference` arm's (default: the first arm) and the table's rows."""
    from tasks.ablation_report import (
        ablation_rows,
        final_figures,
        final_metrics,
        final_test_rows,
        format_table,
        paired_finals,
        plot_ablation,
        row_metrics,
    )
    from tasks.tracking import end_run, log_artifact, log_metrics, set_tags, start_run
    from tasks.tracking_store import client_for

    tracking = configs[0].tracking
    folder = Path(tracking.output_dir).resolve() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    arms = {c.name: c for c in configs}
    reference = reference or next(iter(arms))
    if reference not in arms:  # checked before any arm runs: the comparison comes after all of them
        raise ValueError(f"reference arm {reference!r} is not one of the arms ({', '.join(arms)})")
    parent = start_run(tracking, name, params={"arms": ",".join(arms)}, tags={"selftrain.kind": "ablation"})
    try:
        rows, campaigns, dirs = [], {}, {}
        for arm, config in arms.items():
            summary = campaign_flow(config)
            print_campaign(config, summary)
            campaigns[arm] = summary["parent_run_id"]
            dirs[arm] = summary["workdir"]
            set_tags(config.tracking, summary["parent_run_id"], {"selftrain.ablation_run_id": parent})
            client = client_for(config.tracking)
            runs = {r["run_id"]: client.get_run(r["run_id"]) for r in summary["rounds"][1:]}
            metrics = {run_id: run.data.metrics for run_id, run in runs.items()}
            rows += ablation_rows(arm, summary["rounds"], metrics, round_seconds(runs.values()))
        finals = final_figures(rows)  # each arm's champion; its per-item test rows are in its campaign folder
        credit = {arm: final_test_rows(dirs[arm], final["round"]) for arm, final in finals.items()}
        paired = paired_finals(finals, credit, reference)
        table = format_table(rows, paired, reference)
        print(f"\nAblation {name!r}: validation and test accuracy, diversity and minutes per round\n{table}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "table.txt").write_text(table + "\n")
        summary_json = {
            "campaigns": campaigns,
            "dirs": dirs,
            "rows": rows,
            "final": finals,
            "paired": paired,
        }  # dirs: per-item evaluations
        (folder / "ablation.json").write_text(json.dumps(summary_json, indent=2))
        plot_ablation(rows, folder / "ablation.png", f"{name}: {', '.join(arms)}")
        for row in rows:
            log_metrics(tracking, [parent], row_metrics(row), row["round"])
        log_metrics(tracking, [parent], final_metrics(finals, paired), max(row["round"] for row in rows))
        set_tags(tracking, parent, {f"selftrain.campaign.{arm}": run_id for arm, run_id in campaigns.items()})
        for file in ("table.txt", "ablation.json", "ablation.png"):
            log_artifact(tracking, parent, folder / file)
    except BaseException as error:
        end_run(tracking, parent, "KILLED" if is_interruption(error) else "FAILED")  # as the campaign's runs
        raise
    end_run(tracking, parent)
    print(f"\nAblation run {parent}; table and plot in {folder}")
    return {"run_id": parent, "folder": str(folder), "final": finals, "paired": paired, "rows": rows}
