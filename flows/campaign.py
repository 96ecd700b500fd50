"""The campaign flow: measure the starting policy as round 0, then run rounds, carrying the promoted policy.

Re-running a campaign that crashed resumes it (`flows/campaign_state.py`): rounds whose MLflow run FINISHED are
read back from their `round_result.json`, and inside the interrupted round every task that completed
is a Prefect cache hit (inputs + task source, results persisted under the campaign folder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import flow
from prefect.runtime import flow_run

from configs.schema import CampaignConfig
from flows.campaign_state import Campaign, open_campaign
from flows.interrupt import is_interruption
from flows.round import RoundInputs, RoundResult, round_flow
from tasks.base_model import prepare_base_task
from tasks.evaluate import Evaluation, evaluate_task
from tasks.layout import ROUND_RESULT, CampaignLayout, round_seed
from tasks.model_registry import champion, download_policy, register_policy, registered_name
from tasks.progress import emit
from tasks.prompts import prompts_task
from tasks.records import DatasetRef, ModelRef, atomic_write_text
from tasks.report import report_task
from tasks.tracking import (
    PARENT_TAG,
    RoundContext,
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
    with campaign_run(config, fresh) as campaign:
        policy, rows = run_rounds(config, campaign)
    return {
        "parent_run_id": campaign.parent_run_id,
        "workdir": str(campaign.workdir),
        "final_policy": policy.label,
        "rounds": rows,
    }


def run_rounds(config: CampaignConfig, campaign: Campaign) -> tuple[ModelRef, list[dict]]:
    """Round 0 (the starting policy measured), then each round; return the final policy and one row per round."""
    layout, parent = CampaignLayout(campaign.workdir), campaign.parent_run_id
    ctx = RoundContext(
        tracking=config.tracking,
        round=0,
        seed=round_seed(config.seed, 0),
        folder=str(layout.round_dir(0)),
        run_id=parent,
    )
    results = campaign.results  # Prefect's persisted task results: what a resumed campaign finds again
    atomic_write_text(layout.config, config.model_dump_json(indent=2))
    ctx.log_artifact(layout.config)
    base = prepare_base_task(config)
    policy, source = start_policy(config, base, campaign)
    validation = prompts_task.with_options(result_storage=results)(
        config, "validation", str(layout.split_prompts("validation")), ctx
    )
    start = evaluate_task.with_options(result_storage=results)(
        config, policy, validation, str(layout.evaluated(0)), ctx
    )
    state = RoundInputs(policy=policy, policy_source=source, champion=start, best_accuracy=start.accuracy)
    rows = [{"round": 0, "promoted": True, "run_id": parent, **_curve_point(start)}]
    for index in range(1, config.rounds + 1):
        result = finished_round(config, parent, index, layout) or round_flow.with_options(result_storage=results)(
            config, index, state, validation, parent, str(layout.root)
        )
        state = state.after(result)
        if result.promoted and result.candidate is not None:
            register(config, result, base, validation)
        rows.append(
            {"round": index, "promoted": result.promoted, "run_id": result.run_id, **_curve_point(result.evaluation)}
        )
    report_task(rows, str(layout.plot), config.name, ctx)
    set_tags(config.tracking, parent, {"selftrain.final_policy": state.policy.label})
    return state.policy, rows


@contextmanager
def campaign_run(config: CampaignConfig, fresh: bool) -> Iterator[Campaign]:
    """Open (or resume) the campaign and its parent MLflow run; close the run FINISHED, or mark what the
    campaign left running FAILED (KILLED on Ctrl-C or SIGTERM). The folder lock is held until the campaign's
    last MLflow write: until then the campaign is alive."""
    campaign = open_campaign(config, fresh=fresh, flow_run_id=str(flow_run.id))
    parent = campaign.parent_run_id
    try:
        try:
            yield campaign
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


def start_policy(config: CampaignConfig, base: ModelRef, campaign: Campaign) -> tuple[ModelRef, str | None]:
    """The round-0 policy and the MLflow URI of its adapter: the base, or with `start_from: champion` the
    registry's champion (pinned in `start-policy/start.json`, so a resumed campaign starts from the same one).
    """
    if config.start_from == "base":
        return base, None
    pinned = CampaignLayout(campaign.workdir).start_policy / "start.json"
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


def finished_round(config: CampaignConfig, parent: str, index: int, layout: CampaignLayout) -> RoundResult | None:
    """A round this campaign already finished (a resumed campaign), read back from its MLflow run."""
    runs = find_runs(config.tracking, {PARENT_TAG: parent, "selftrain.round": str(index)}, ("FINISHED",))
    if not runs:
        return None
    saved = download_json(config.tracking, runs[0].info.run_id, ROUND_RESULT, layout.downloads)
    emit(f"round {index}: finished before the resume (run {runs[0].info.run_id}), not run again")
    return RoundResult.model_validate(saved)


def register(config: CampaignConfig, result: RoundResult, base: ModelRef, validation: DatasetRef) -> None:
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
        heldout_sha256=validation.sha256,
        margin=config.evaluate.promotion_margin,
    )
    emit(f"round {result.round}: registered {name} version {version}" + (" (champion)" if aliased else ""))


def _curve_point(evaluation: Evaluation | None) -> dict[str, float | None]:
    metrics = evaluation.metrics if evaluation is not None else {}
    return {key: metrics.get(key) for key in ("accuracy", "ci_low", "ci_high")}
