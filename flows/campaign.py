"""The campaign flow: measure the starting policy as round 0, then run rounds, carrying the promoted policy.

Re-running a campaign that crashed resumes it (`flows/campaign_state.py`): rounds whose MLflow run FINISHED are
read back from their `round_result.json`, and inside the interrupted round every task that completed
is a Prefect cache hit (inputs + task source, results persisted under the campaign folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from configs.schema import CampaignConfig
from flows.campaign_state import Campaign, open_campaign
from flows.interrupt import is_interruption
from flows.round import RoundResult, round_flow
from tasks.base_model import prepare_base_task
from tasks.evaluate import evaluate_task
from tasks.model_registry import champion, download_policy, register_policy, registered_name
from tasks.monitors import evaluated_path
from tasks.progress import emit
from tasks.prompts import prompts_task
from tasks.records import DatasetRef, ModelRef, atomic_write_text
from tasks.report import report_task
from tasks.tracking import (
    PARENT_TAG,
    RunContext,
    download_json,
    fail_running,
    find_runs,
    finish_run,
    kill_running,
    set_tags,
)


@flow(name="selftrain-campaign", flow_run_name="{config.name}")
def campaign_flow(config: CampaignConfig, fresh: bool = False) -> dict:
    """Run (or resume, unless `fresh`) a whole campaign; return its MLflow run ids and one row per round."""
    campaign = open_campaign(config, fresh=fresh, flow_run_id=str(flow_run.id))
    parent = campaign.parent_run_id
    try:  # the folder lock is held until the campaign's last MLflow write: until then it is alive
        try:
            policy, rows = run_rounds(config, campaign)
        except BaseException as error:
            if is_interruption(error):  # Ctrl-C or SIGTERM: KILLED, resumed like a crash
                kill_running(config.tracking, parent)
            else:
                fail_running(config.tracking, parent, "the campaign raised")
            raise
        fail_running(config.tracking, parent, "left running when its campaign ended", include_parent=False)
        finish_run(config.tracking, parent)
    finally:
        campaign.release()
    return {"parent_run_id": parent, "workdir": str(campaign.workdir), "final_policy": policy.label, "rounds": rows}


def run_rounds(config: CampaignConfig, campaign: Campaign) -> tuple[ModelRef, list[dict]]:
    """Round 0 (the starting policy measured), then each round; return the final policy and one row per round."""
    workdir, parent = campaign.workdir, campaign.parent_run_id
    ctx = RunContext(tracking=config.tracking, run_id=parent, step=0)
    cached = {"result_storage": campaign.results}
    atomic_write_text(workdir / "config.json", config.model_dump_json(indent=2))
    ctx.log_artifact(workdir / "config.json")
    base = prepare_base_task(config)
    policy, source = start_policy(config, base, campaign)
    heldout = prompts_task.with_options(**cached)(config, "heldout", 0, str(workdir / "heldout.jsonl"), ctx)
    evaluate = evaluate_task.with_options(**cached)
    base_metrics = evaluate(config, policy, heldout, str(evaluated_path(policy, workdir)), ctx)  # round 0
    best = base_metrics["accuracy"]
    rows = [{"round": 0, "promoted": True, "run_id": parent, **_curve_point(base_metrics)}]
    for index in range(1, config.rounds + 1):
        result = finished_round(config, parent, index, workdir) or round_flow.with_options(**cached)(
            config, index, policy, best, heldout, parent, str(workdir), source
        )
        if result.promoted and result.candidate is not None:
            policy, best, source = result.candidate, float(result.accuracy or 0.0), f"runs:/{result.run_id}/adapter"
            register(config, result, base, heldout)
        rows.append({"round": index, "promoted": result.promoted, "run_id": result.run_id, **_curve_point(result)})
    report_task(rows, str(workdir / "accuracy.png"), config.name, ctx)
    set_tags(config.tracking, parent, {"selftrain.final_policy": policy.label})
    return policy, rows


def start_policy(config: CampaignConfig, base: ModelRef, campaign: Campaign) -> tuple[ModelRef, str | None]:
    """The round-0 policy and the MLflow URI of its adapter: the base, or with `start_from: champion` the
    registry's champion (pinned in `start-policy/start.json`, so a resumed campaign starts from the same one).
    """
    if config.start_from == "base":
        return base, None
    pinned = campaign.workdir / "start-policy" / "start.json"
    if pinned.exists():
        saved = json.loads(pinned.read_text(encoding="utf-8"))
        return ModelRef.model_validate(saved["policy"]), saved["source"]
    name = registered_name(config.name)
    version = champion(config.tracking, name)
    if version is None:
        emit(f"start_from=champion: {name} has no champion yet; starting from the base model")
        return base, None
    if version.tags.get("base_sha256") != base.sha256:
        raise ValueError(f"start_from=champion: {name} version {version.version} was trained on another base model")
    policy, source = download_policy(config.tracking, version, pinned.parent)
    record = {"policy": policy.model_dump(), "source": source, "version": version.version}
    atomic_write_text(pinned, json.dumps(record, indent=2))
    set_tags(config.tracking, campaign.parent_run_id, {"selftrain.start_policy": f"{name}/{version.version}"})
    emit(f"start_from=champion: starting from {name} version {version.version}")
    return policy, source


def finished_round(config: CampaignConfig, parent: str, index: int, workdir: Path) -> RoundResult | None:
    """A round this campaign already finished (a resumed campaign), read back from its MLflow run."""
    runs = find_runs(config.tracking, {PARENT_TAG: parent, "selftrain.round": str(index)}, ("FINISHED",))
    if not runs:
        return None
    saved = download_json(config.tracking, runs[0].info.run_id, "round_result.json", workdir / ".downloads")
    emit(f"round {index}: finished before the resume (run {runs[0].info.run_id}), not run again")
    return RoundResult.model_validate(saved)


def register(config: CampaignConfig, result: RoundResult, base: ModelRef, heldout: DatasetRef) -> None:
    """Register a promoted round's policy in the MLflow model registry."""
    assert result.candidate is not None
    name = registered_name(config.name)
    version, aliased = register_policy(
        config.tracking,
        name,
        result.run_id,
        result.candidate,
        base,
        accuracy=float(result.accuracy or 0.0),
        heldout_sha256=heldout.sha256,
        margin=config.evaluate.promotion_margin,
    )
    emit(f"round {result.round}: registered {name} version {version}" + (" (champion)" if aliased else ""))


def _curve_point(source: RoundResult | dict[str, float]) -> dict[str, float | None]:
    values = source.model_dump() if isinstance(source, RoundResult) else source
    return {key: values.get(key) for key in ("accuracy", "ci_low", "ci_high")}
