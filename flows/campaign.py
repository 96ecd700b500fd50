"""The campaign flow: measure the base policy as round 0, then run rounds, carrying the promoted policy."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from configs.loader import flatten
from configs.schema import CampaignConfig
from flows.round import RoundResult, round_flow
from tasks.evaluate import evaluate_task
from tasks.policy import prepare_base_task
from tasks.prompts import prompts_task
from tasks.records import atomic_write_text
from tasks.report import report_task
from tasks.tracking import RunContext, end_run, set_tags, start_run


@flow(name="selftrain-campaign", flow_run_name="{config.name}")
def campaign_flow(config: CampaignConfig) -> dict:
    """Run a whole campaign and return its summary: MLflow run ids and one row per round."""
    workdir = Path(config.tracking.output_dir).resolve() / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = start_run(
        config.tracking,
        config.name,
        params=flatten(config),
        tags={
            "selftrain.kind": "campaign",
            "prefect.flow_run_id": str(flow_run.id),
            "selftrain.dir": str(workdir),
        },
    )
    ctx = RunContext(tracking=config.tracking, run_id=parent, step=0)
    try:
        atomic_write_text(workdir / "config.json", config.model_dump_json(indent=2))
        ctx.log_artifact(workdir / "config.json")
        policy = prepare_base_task(config)
        heldout = prompts_task(config, "heldout", 0, str(workdir / "heldout.jsonl"), ctx)
        base_metrics = evaluate_task(config, policy, heldout, str(workdir / "round-00-evaluated.jsonl"), ctx)
        best = base_metrics["accuracy"]
        rows = [{"round": 0, "promoted": True, "run_id": parent, **_curve_point(base_metrics)}]
        for index in range(1, config.rounds + 1):
            result = round_flow(config, index, policy, best, heldout, parent, str(workdir))
            if result.promoted and result.candidate is not None:
                policy, best = result.candidate, float(result.accuracy or 0.0)
            rows.append({"round": index, "promoted": result.promoted, "run_id": result.run_id, **_curve_point(result)})
        report_task(rows, str(workdir / "accuracy.png"), config.name, ctx)
        set_tags(config.tracking, parent, {"selftrain.final_policy": policy.label})
    except BaseException:
        end_run(config.tracking, parent, "FAILED")
        raise
    end_run(config.tracking, parent)
    return {"parent_run_id": parent, "workdir": str(workdir), "final_policy": policy.label, "rounds": rows}


def _curve_point(source: RoundResult | dict[str, float]) -> dict[str, float | None]:
    values = source.model_dump() if isinstance(source, RoundResult) else source
    return {key: values.get(key) for key in ("accuracy", "ci_low", "ci_high")}
