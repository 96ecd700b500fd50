"""One self-training round as a Prefect flow: generate, judge, select, train, evaluate, gate."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from configs.schema import CampaignConfig
from flows.campaign_state import recorded_config
from flows.interrupt import is_interruption
from tasks.evaluate import evaluate_task, should_promote
from tasks.generate import generate_task
from tasks.judge import judge_task
from tasks.monitors import evaluated_path, monitor_task
from tasks.prompts import prompts_task
from tasks.records import DatasetRef, ModelRef
from tasks.select import select_task
from tasks.tracking import RunContext, end_run, finish_run, open_run, round_input, set_tags
from tasks.train_dpo import dpo_train_task
from tasks.train_sft import sft_train_task
from tasks.train_superhf import superhf_train_task


class RoundResult(BaseModel):
    """What a round hands back to the campaign: its run, its candidate and the gate's decision."""

    round: int
    run_id: str
    candidate: ModelRef | None
    accuracy: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    promoted: bool


@flow(name="selftrain-round", flow_run_name="{config.name}-round-{round_index}")
def round_flow(
    config: CampaignConfig,
    round_index: int,
    policy: ModelRef,
    incumbent_accuracy: float,
    heldout: DatasetRef,
    parent_run_id: str,
    workdir: str,
    policy_source: str | None = None,
) -> RoundResult:
    """Run round `round_index` from `policy` (adapter logged at MLflow URI `policy_source`, None for the base);
    promote the result if the gate allows. A resumed campaign reopens the round's run (found by its tags)."""
    folder = Path(workdir) / f"round-{round_index:02d}"
    params, config_tags = recorded_config(config)
    run_id = open_run(
        config.tracking,
        f"{config.name}-round-{round_index}",
        params={"round": str(round_index), "input_policy": policy.label, **params},
        tags={"prefect.flow_run_id": str(flow_run.id), **config_tags},
        parent_run_id=parent_run_id,
        match={"selftrain.round": str(round_index)},
    )
    ctx = RunContext(tracking=config.tracking, run_id=run_id, parent_run_id=parent_run_id, step=round_index)
    try:
        inputs = round_input(config, round_index, policy, policy_source, incumbent_accuracy, heldout, parent_run_id)
        ctx.log_json(folder / "round_input.json", inputs)  # what `selftrain reproduce` reads
        if evaluated_path(policy, workdir).exists():  # the incumbent's held-out answers (flip monitor), for reproduce
            ctx.log_artifact(evaluated_path(policy, workdir), "inputs")
        prompts = prompts_task(config, "train", round_index, str(folder / "prompts.jsonl"), ctx)
        generated = generate_task(config, policy, prompts, str(folder / "generated.jsonl"), ctx)
        judged = judge_task(config, generated, str(folder / "judged.jsonl"), ctx, policy=policy, workdir=workdir)
        selected = select_task(config, judged, str(folder / "selected.jsonl"), ctx)
        if config.train.method == "dpo":  # DPO learns from every judged sample (pairs), not only the kept ones
            candidate = dpo_train_task(config, policy, judged, selected, str(folder / "adapter"), ctx)
        else:
            train = superhf_train_task if config.train.method == "superhf" else sft_train_task
            candidate = train(config, policy, selected, str(folder / "adapter"), ctx)
        metrics: dict[str, float] = {}
        if candidate is not None:
            metrics = evaluate_task(config, candidate, heldout, str(folder / "evaluated.jsonl"), ctx)
        accuracy = metrics.get("accuracy")
        evaluated = str(folder / "evaluated.jsonl") if candidate is not None else None
        watch = monitor_task(config, judged, evaluated, str(evaluated_path(policy, workdir)), ctx)
        promoted = accuracy is not None and should_promote(
            accuracy,
            incumbent_accuracy,
            config.evaluate.promotion_margin,
            watch.get("negative_flip_rate"),
            config.monitor.max_flip_rate,
        )
        ctx.log_metrics({"gate/promoted": float(promoted), "gate/incumbent_accuracy": incumbent_accuracy})
        set_tags(config.tracking, run_id, {"selftrain.promoted": str(promoted).lower()})
        result = RoundResult(
            round=round_index,
            run_id=run_id,
            candidate=candidate,
            accuracy=accuracy,
            ci_low=metrics.get("ci_low"),
            ci_high=metrics.get("ci_high"),
            promoted=promoted,
        )
        ctx.log_json(folder / "round_result.json", result.model_dump())  # read back by a resumed campaign
    except BaseException as error:
        if is_interruption(error):  # Ctrl-C or SIGTERM: KILLED, resumable like a crash
            set_tags(config.tracking, run_id, {"selftrain.failure": "interrupted"})
        end_run(config.tracking, run_id, "KILLED" if is_interruption(error) else "FAILED")
        raise
    finish_run(config.tracking, run_id)
    return result
