"""One self-training round as a Prefect flow: generate, judge, select, train, evaluate, gate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from configs.schema import CampaignConfig
from flows.campaign_state import recorded_config
from flows.interrupt import failure_line, is_interruption
from tasks.accumulate import accumulate_task
from tasks.evaluate import Evaluation, evaluate_task
from tasks.gate import GateDecision, decide, holds_the_best
from tasks.generate import generate_task
from tasks.judge import judge_task
from tasks.layout import (
    ACCUMULATED,
    ADAPTER,
    GENERATED,
    JUDGED,
    PROMPTS,
    ROUND_INPUT,
    ROUND_RESULT,
    SELECTED,
    CampaignLayout,
    round_seed,
)
from tasks.monitors import monitor_task
from tasks.prompts import prompts_task
from tasks.rationalize import RATIONALIZED, rationalize_task
from tasks.records import DatasetRef, ModelRef, read_records
from tasks.select import select_task
from tasks.tracking import RoundContext, end_run, finish_run, logged_sources, open_run, round_input, set_tags
from tasks.train_dpo import dpo_train_task
from tasks.train_grpo import grpo_train_task
from tasks.train_sft import sft_train_task
from tasks.train_superhf import superhf_train_task


class RoundResult(BaseModel):
    """What a round hands back to the campaign: its run, its candidate, its evaluation and the gate's decision."""

    round: int
    run_id: str
    candidate: ModelRef | None
    evaluation: Evaluation | None  # the candidate on validation; None when training was skipped
    judged: DatasetRef  # the round's judged rows (later rounds' reference bank)
    selected: DatasetRef | None = None  # the round's selected rows (train.init=base: later rounds train on them too)
    promoted: bool
    reason: str  # the gate's decision in one sentence (tag `selftrain.gate`)
    best_after: float  # the best validation accuracy of any promoted policy after this round

    @property
    def accuracy(self) -> float | None:
        """The candidate's validation accuracy (None: not trained)."""
        return self.evaluation.accuracy if self.evaluation else None


class RoundInputs(BaseModel):
    """What the campaign carries into a round."""

    model_config = ConfigDict(frozen=True)

    policy: ModelRef  # the policy the round trains from: the last promoted one
    policy_source: str | None  # MLflow URI of its adapter (None: the base model)
    champion: Evaluation  # the champion's (best promoted policy's) validation answers: the gate compares with them
    champion_round: int  # the round that trained the champion (0: the starting policy)
    best_accuracy: float  # the best validation accuracy any promoted policy reached: the gate's margin origin
    earlier: tuple[DatasetRef, ...] = ()  # earlier rounds' judged rows, oldest first
    earlier_selected: tuple[DatasetRef, ...] = ()  # earlier rounds' selected rows, oldest first (ReST-EM's data)
    base: ModelRef | None = None  # the campaign's base model (train.init=base trains a fresh adapter on it)
    earlier_runs: tuple[str, ...] = ()  # the MLflow run that logged each `earlier` file (reproduce downloads it)
    earlier_selected_runs: tuple[str, ...] = ()  # the MLflow run that logged each `earlier_selected` file

    def after(self, result: RoundResult) -> RoundInputs:
        """The inputs of the next round: a promoted candidate becomes the policy to train from, and the champion
        when its validation accuracy is at least the best so far (ties go to the newer, as the registry alias)."""
        update: dict[str, object] = {"earlier": (*self.earlier, result.judged), "best_accuracy": result.best_after}
        update["earlier_runs"] = (*self.earlier_runs, result.run_id)
        if result.selected is not None:
            update["earlier_selected"] = (*self.earlier_selected, result.selected)
            update["earlier_selected_runs"] = (*self.earlier_selected_runs, result.run_id)
        if result.promoted and result.candidate is not None and result.evaluation is not None:
            update |= {"policy": result.candidate, "policy_source": f"runs:/{result.run_id}/{ADAPTER}"}
            if holds_the_best(result.evaluation.accuracy, result.best_after):
                update |= {"champion": result.evaluation, "champion_round": result.round}
        return self.model_copy(update=update)


@flow(name="selftrain-round", flow_run_name="{config.name}-round-{round_index}")
def round_flow(
    config: CampaignConfig,
    round_index: int,
    state: RoundInputs,
    validation: DatasetRef,
    parent_run_id: str,
    workdir: str,
) -> RoundResult:
    """Run round `round_index` from `state.policy`; promote the result if the gate allows. A resumed campaign
    reopens the round's run (found by its tags)."""
    layout = CampaignLayout(Path(workdir))
    path = {name: str(layout.in_round(round_index, name)) for name in (PROMPTS, GENERATED, JUDGED, SELECTED, ADAPTER)}
    with round_run(config, layout, round_index, state.policy, parent_run_id) as ctx:
        inputs = round_input(
            config,
            ctx,
            state.policy,
            validation,
            policy_source=state.policy_source,
            state=state,
            earlier_sources=logged_sources(state.earlier, state.earlier_runs),
            earlier_selected_sources=logged_sources(state.earlier_selected, state.earlier_selected_runs),
        )
        ctx.log_json(layout.in_round(round_index, ROUND_INPUT), inputs)  # what `selftrain reproduce` reads
        ctx.log_artifact(state.champion.ref.path, "inputs")  # the champion's answers (gate, monitor): reproduce
        earlier = state.earlier if config.prompts.curriculum else ()  # the curriculum's pass-rate history
        prompts = prompts_task(config, "train", path[PROMPTS], ctx, earlier=earlier)
        generated = generate_task(config, state.policy, prompts, path[GENERATED], ctx)
        judged = judge_task(config, generated, path[JUDGED], ctx, policy=state.policy, earlier=state.earlier)
        own = judged  # the policy's own judged samples: the monitors and later rounds' history read these
        if config.generate.rationalize:  # STaR: failed prompts' hinted, verified rationales join the training data
            judged = rationalize_task(config, state.policy, own, str(layout.in_round(round_index, RATIONALIZED)), ctx)
        selected = select_task(config, judged, path[SELECTED], ctx, policy=state.policy)
        candidate = train(config, state, prompts, judged, selected, path[ADAPTER], ctx)
        evaluation = None
        if candidate is not None:
            evaluation = evaluate_task(config, candidate, validation, str(layout.evaluated(round_index)), ctx)
        monitor_task(config, own, evaluation.ref if evaluation else None, state.champion.ref, ctx)
        decision = gate(config, evaluation, state)
        promoted = decision is not None and decision.promoted
        reason = decision.reason if decision is not None else "refused: training was skipped"
        ctx.log_metrics(decision.metrics() if decision is not None else {"gate/promoted": 0.0})
        set_tags(config.tracking, ctx.run_id, {"selftrain.promoted": str(promoted).lower(), "selftrain.gate": reason})
        result = RoundResult(
            round=round_index,
            run_id=ctx.run_id,
            candidate=candidate,
            evaluation=evaluation,
            judged=own,
            selected=selected,
            promoted=promoted,
            reason=reason,
            best_after=decision.best_after if decision is not None else state.best_accuracy,
        )
        ctx.log_json(layout.in_round(round_index, ROUND_RESULT), result.model_dump())  # read back on a resume
    return result


def gate(config: CampaignConfig, evaluation: Evaluation | None, state: RoundInputs) -> GateDecision | None:
    """The gate's decision on the candidate's validation answers against the champion's (`tasks.gate.decide`);
    None when training was skipped (nothing to promote)."""
    if evaluation is None:
        return None
    return decide(
        read_records(evaluation.ref),
        read_records(state.champion.ref),
        best_accuracy=state.best_accuracy,
        margin=config.evaluate.promotion_margin,
        alpha=config.evaluate.gate_alpha,
        max_flip_rate=config.monitor.max_flip_rate,
    )


def train(
    config: CampaignConfig,
    state: RoundInputs,
    prompts: DatasetRef,
    judged: DatasetRef,
    selected: DatasetRef,
    out_dir: str,
    ctx: RoundContext,
) -> ModelRef | None:
    """The configured trainer's step: DPO learns from every judged sample (pairs), GRPO from the round's prompts
    (sampling its own groups), the others from the kept rows; with `train.init: base` (ReST-EM) a fresh adapter on
    the base model learns from every round's kept rows so far."""
    if config.train.method == "dpo":
        return dpo_train_task(config, state.policy, judged, selected, out_dir, ctx)
    if config.train.method == "grpo":
        return grpo_train_task(config, state.policy, prompts, out_dir, ctx)
    start, data = state.policy, selected
    if config.train.init == "base":
        start = state.base or ModelRef(source=state.policy.source, base=state.policy.base)
        data = accumulate_task(config, state.earlier_selected, selected, str(Path(ctx.folder) / ACCUMULATED), ctx)
    set_tags(config.tracking, ctx.run_id, {"selftrain.trained_from": start.label})
    step = superhf_train_task if config.train.method == "superhf" else sft_train_task
    return step(config, start, data, out_dir, ctx)


@contextmanager
def round_run(
    config: CampaignConfig, layout: CampaignLayout, round_index: int, policy: ModelRef, parent_run_id: str
) -> Iterator[RoundContext]:
    """Open (or, on a resume, reopen) the round's MLflow child run and yield the round's context; close the run
    FINISHED, or FAILED when the round raises, or KILLED (tagged `interrupted`) on Ctrl-C or SIGTERM."""
    params, config_tags = recorded_config(config)
    run_id = open_run(
        config.tracking,
        f"{config.name}-round-{round_index}",
        params={"round": str(round_index), "input_policy": policy.label, **params},
        tags={"prefect.flow_run_id": str(flow_run.id), **config_tags},
        parent_run_id=parent_run_id,
        match={"selftrain.round": str(round_index)},
    )
    ctx = RoundContext(
        tracking=config.tracking,
        round=round_index,
        seed=round_seed(config.seed, round_index),
        folder=str(layout.round_dir(round_index)),
        run_id=run_id,
        parent_run_id=parent_run_id,
    )
    try:
        yield ctx
    except BaseException as error:
        # Ctrl-C or SIGTERM: KILLED, resumable like a crash; else FAILED with the error's first line (never the
        # reason an earlier attempt of the round left)
        reason = "interrupted" if is_interruption(error) else failure_line(error)
        set_tags(config.tracking, run_id, {"selftrain.failure": reason})
        end_run(config.tracking, run_id, "KILLED" if is_interruption(error) else "FAILED")
        raise
    finish_run(config.tracking, run_id)
