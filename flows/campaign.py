"""The campaign flow: measure the starting policy as round 0, then run rounds, carrying the promoted policy.

Re-running a campaign that crashed resumes it (`flows/campaign_state.py`): rounds whose MLflow run FINISHED are
read back from their `round_result.json`, and inside the interrupted round every task that completed
is a Prefect cache hit (inputs + task source, results persisted under the campaign folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run

from configs.schema import CampaignConfig
from flows.campaign_state import Campaign, open_campaign
from flows.interrupt import StopError, is_interruption
from flows.preflight import check_prepared_model, check_ray_cluster, preflight_once
from flows.round import RoundInputs, RoundResult, round_flow
from flows.start_policy import start_policy
from tasks.base_model import prepare_base_task
from tasks.evaluate import Evaluation, evaluate_task, greedy_rows, metric_prefix
from tasks.layout import ROUND_RESULT, CampaignLayout, round_seed
from tasks.model_registry import register_policy, registered_name
from tasks.prefect_artifacts import publish_campaign, publish_round
from tasks.progress import emit
from tasks.prompts import has_split, item_kind, prompts_task, split_size
from tasks.records import DatasetRef, ModelRef, Record, atomic_write_text, read_records, sha256_dir, sha256_file
from tasks.report import FinalClaim, final_claim, report_task
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
from tasks.tracking_store import client_for, tracking_uri


@flow(name="selftrain-campaign", flow_run_name="{config.name}")
def campaign_flow(config: CampaignConfig, fresh: bool = False) -> dict:
    """Run (or resume, unless `fresh`) a whole campaign; return its MLflow run ids, one row per round (validation,
    and test for the starting and each promoted policy) and the final claim on test (None without a test set).
    Its inputs are checked first, where it runs (`flows.preflight.preflight_once`): a run from the UI, a schedule
    or `selftrain submit` with a missing file fails in one line before any folder or MLflow run exists, and so
    does a Ray cluster that does not answer (`check_ray_cluster`), and a model whose files refuse the config
    once it is converted or downloaded (`check_prepared_model`).

    Args:
        config: The campaign, every field with its meaning (`selftrain schema` prints the same).
        fresh: Start a new campaign even when an unfinished one with the same config could be resumed.
    """
    preflight_once(config)
    check_ray_cluster(config)
    base = prepare_base_task(config)
    check_prepared_model(config)  # what preflight could not read before the model was converted or downloaded
    with campaign_run(config, fresh) as campaign:
        return {
            "parent_run_id": campaign.parent_run_id,
            "workdir": str(campaign.workdir),
            **run_rounds(config, campaign, base),
        }


def run_rounds(config: CampaignConfig, campaign: Campaign, base: ModelRef) -> dict:
    """Round 0 (the starting policy measured), then each round; validation decides, test reports."""
    layout, parent, results = CampaignLayout(campaign.workdir), campaign.parent_run_id, campaign.results
    at = partial(campaign_context, config, layout, parent)  # the campaign run's context at a round's step
    ctx = at(0)
    atomic_write_text(layout.config, config.model_dump_json(indent=2))
    ctx.log_artifact(layout.config)
    policy, source = start_policy(config, base, campaign)
    prompts = prompts_task.with_options(result_storage=results)
    sets = {split: prompts(config, split, str(layout.split_prompts(split)), ctx) for split in fixed_splits(config)}
    extras = {split: sets.pop(split) for split in list(sets) if split.startswith("extra/")}
    validation, tests = sets.pop("validation"), sets  # validation decides; test and OOD report
    tested = {0: score(config, policy, {"validation": validation, **tests}, layout, ctx, results)}
    start = tested[0].pop("validation")
    shot = few_shot_baseline(config, policy, tests, layout, ctx, results)
    state = RoundInputs(
        policy=policy,
        policy_source=source,
        champion=start,
        champion_round=0,
        best_accuracy=start.accuracy,
        base=base,
    )
    policies = {0: policy}
    rows = [row(0, True, parent, start, tested[0]) | baseline_cells(shot)]
    for index in range(1, config.rounds + 1):
        finished = finished_round(config, parent, index, layout)
        result = finished or round_flow.with_options(result_storage=results)(
            config, index, state, validation, parent, str(layout.root)
        )
        campaign.push()  # the finished round reaches storage.base's mirror at once (no-op for a folder)
        state = state.after(result)
        if result.promoted and result.candidate is not None:
            if state.champion_round == index:  # promoted within the margin below the best is no champion
                register(config, result, base, validation)
            policies[index] = result.candidate
            if config.evaluate.test_rounds == "promoted":
                tested[index] = score(config, result.candidate, tests, layout, at(index), results)
        rows.append(row(index, result.promoted, result.run_id, result.evaluation, tested.get(index)))
        publish_round_artifacts(config, result, tested.get(index), again=finished is not None)
    final_round = state.champion_round
    if final_round not in tested:  # evaluate.test_rounds: final
        tested[final_round] = score(config, policies[final_round], tests, layout, at(final_round), results)
        rows[final_round] = row(final_round, True, rows[final_round]["run_id"], state.champion, tested[final_round])
    extra = {index: score(config, policies[index], extras, layout, at(index), results) for index in {0, final_round}}
    extra_claims = {  # extra sets: the final policy against the starting one, paired on each set's items
        split: final_report(config, extra[0], extra[final_round], at(config.rounds), split, split=split)
        for split in extras
    }
    claim = final_report(config, tested[0], tested[final_round], at(config.rounds))
    shot_claim = final_report(config, shot, tested[final_round], at(config.rounds), "vs_few_shot") if shot else None
    greedy_claim = (  # evaluate.resample_failed_working: the same pair as both answered greedily, beside it
        final_report(config, shot, tested[final_round], at(config.rounds), "vs_few_shot", greedy=True)
        if shot and config.evaluate.resample_failed_working
        else None
    )
    report_task(rows, str(layout.plot), config.name, ctx)
    run = client_for(config.tracking).get_run(parent)
    uri, sentence = tracking_uri(config.tracking), claim.sentence() if claim else None
    if sentence and shot_claim:
        sentence += f". Against {few_shot_label(config)}: {shot_claim.sentence()}"
    if sentence and greedy_claim:
        sentence += f". The same, both answering greedily (no resampling): {greedy_claim.sentence()}"
    against = shot_claim or claim  # per kind against the bar when there is one
    by_kind = against.kinds_line("few-shot bar" if shot_claim else "start") if against is not None else None
    if sentence and by_kind:
        sentence += f". {by_kind[0].upper()}{by_kind[1:]}"
    publish_campaign(
        config.name,
        rows,
        sentence,
        tracking_uri=uri,
        experiment_id=run.info.experiment_id,
        run_id=parent,
        kinds=[kind.cells() for kind in against.kinds] if against is not None else [],
        kinds_start=few_shot_label(config) if shot_claim else "the starting policy",
    )
    set_tags(config.tracking, parent, {"selftrain.final_policy": policies[final_round].label})
    return {
        "final_policy": policies[final_round].label,
        "rounds": rows,
        "claim": claim,
        "few_shot_claim": shot_claim,
        "greedy_claim": greedy_claim,
        "by_kind": by_kind,
        "extra_claims": {split.removeprefix("extra/"): claim for split, claim in extra_claims.items() if claim},
    }


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
            push_after_failure(campaign)
            raise
        fail_running(config.tracking, parent, "left running when its campaign ended", include_parent=False)
        campaign.push()
        finish_run(config.tracking, parent)
    finally:
        campaign.release()


def push_after_failure(campaign: Campaign) -> None:
    """Mirror what a failed campaign finished, so a resume elsewhere reuses it; a failing push is reported, not
    raised (the campaign's own error is the one to see)."""
    try:
        campaign.push()
    except Exception as error:  # noqa: BLE001 (any store error: the campaign's error propagates instead)
        emit(f"campaign {campaign.campaign_id}: could not push to {campaign.mirror}: {error}")


def finished_round(config: CampaignConfig, parent: str, index: int, layout: CampaignLayout) -> RoundResult | None:
    """A round this campaign already finished (a resumed campaign), read back from its MLflow run."""
    runs = find_runs(config.tracking, {PARENT_TAG: parent, "selftrain.round": str(index)}, ("FINISHED",))
    if not runs:
        return None
    run_id = runs[0].info.run_id
    result = RoundResult.model_validate(download_json(config.tracking, run_id, ROUND_RESULT, layout.downloads))
    problem = changed_files(result)
    if problem:
        raise CampaignFilesError(
            f"round {index} finished before the resume, but {problem}; restore it (MLflow run {run_id} holds a "
            "copy: the data under data/, the adapter under adapter/) or start a new campaign with --fresh"
        )
    emit(f"round {index}: finished before the resume (run {run_id}), not run again")
    return result


class CampaignFilesError(StopError):
    """A resumed campaign's finished round lost a file the later rounds read, or the file changed."""


def changed_files(result: RoundResult) -> str | None:
    """What a finished round's files no longer hold (`<path> is missing` / `<path> changed since the round wrote
    it`, by the content hashes the round recorded), or None when all are as it left them."""
    refs = [result.judged, result.selected, result.evaluation.ref if result.evaluation else None]
    for ref in (ref for ref in refs if ref is not None):
        if not Path(ref.path).is_file():
            return f"{ref.path} is missing"
        if sha256_file(ref.path) != ref.sha256:
            return f"{ref.path} changed since the round wrote it"
    adapter = result.candidate.adapter if result.candidate else None
    if result.candidate and adapter:
        if not Path(adapter).is_dir():
            return f"its adapter {adapter} is missing"
        if result.candidate.sha256 and sha256_dir(adapter) != result.candidate.sha256:
            return f"its adapter {adapter} changed since the round wrote it (a file in it is missing or different)"
    return None


def register(config: CampaignConfig, result: RoundResult, base: ModelRef, validation: DatasetRef) -> None:
    """Register a round's policy in the MLflow model registry: a round that became the campaign's champion (with
    `evaluate.promotion_margin` 0, every promoted round), so the registry's alias never moves to a policy the
    campaign ranked below one it had (the starting policy included, which is no version)."""
    assert result.candidate is not None
    name = registered_name(config.name)
    figures = result.evaluation.metrics if result.evaluation is not None else {}
    registration = register_policy(
        config.tracking,
        name,
        result.run_id,
        result.candidate,
        base,
        accuracy=float(result.accuracy or 0.0),
        heldout_sha256=validation.sha256,
        interval=(figures["ci_low"], figures["ci_high"]) if "ci_low" in figures else None,
        decoding=config.evaluate.decoding,
        template=config.prompts.template,  # what the served model formats prompts with, greedy as evaluate
        max_new_tokens=config.evaluate.max_new_tokens,
        example=read_records(validation)[0]["prompt"],  # the model's input example: a question as it takes one
    )
    registered = "registered" if registration.made else "already registered as"  # before a kill, on a resume
    alias = " (champion)" if registration.champion else ""
    emit(f"round {result.round}: {registered} {name} version {registration.version}{alias}")


def publish_round_artifacts(
    config: CampaignConfig, result: RoundResult, tested: dict[str, Evaluation] | None, again: bool = False
) -> None:
    """The round's Prefect artifacts (`tasks.prefect_artifacts.publish_round`) on the round's flow run: its MLflow
    run's metrics, and its test figures when the campaign scored its policy on test. `again`: the round finished
    before a resume, and its flow run keeps the artifacts it has."""
    run = client_for(config.tracking).get_run(result.run_id)
    metrics = dict(run.data.metrics) | {
        f"{metric_prefix(split)}{key}": value
        for split, ev in (tested or {}).items()
        for key, value in ev.metrics.items()
    }
    flow_run_id = run.data.tags.get("prefect.flow_run_id")
    publish_round(
        config.name,
        result.round,
        metrics,
        promoted=result.promoted,
        reason=result.reason,
        tracking_uri=tracking_uri(config.tracking),
        experiment_id=run.info.experiment_id,
        run_id=result.run_id,
        flow_run_id=UUID(flow_run_id) if flow_run_id else None,
        again=again,
    )


def campaign_context(config: CampaignConfig, layout: CampaignLayout, parent: str, index: int) -> RoundContext:
    """The campaign run's context at round `index`: what the campaign's own steps (round 0, test scores of a
    promoted policy, the report) log at that step."""
    folder = layout.round_dir(index)
    return RoundContext(
        tracking=config.tracking,
        round=index,
        seed=round_seed(config.seed, index),
        folder=str(folder),
        run_id=parent,
        data_dir=f"data/{folder.name}",  # the start's and the final policy's scores share file names
    )


def fixed_splits(config: CampaignConfig) -> list[str]:
    """The campaign's fixed prompt sets: validation (decides), test and the OOD slice (report; when the campaign
    has them), and each `evaluate.extra_sets` entry as `extra/<name>`."""
    splits = ["validation"] + [
        split for split in ("test", "ood") if split_size(config, split) > 0 and has_split(config, split)
    ]
    return splits + [f"extra/{extra.name}" for extra in config.evaluate.extra_sets]


def score(
    config: CampaignConfig,
    policy: ModelRef,
    sets: dict[str, DatasetRef],
    layout: CampaignLayout,
    ctx: RoundContext,
    results: Path,
) -> dict[str, Evaluation]:
    """Score `policy` on each of `sets` (by split name), logging on the campaign run at the context's round."""
    evaluate = evaluate_task.with_options(result_storage=results)
    return {
        split: evaluate(config, policy, ref, str(layout.evaluated(ctx.round, split)), ctx, split=split)
        for split, ref in sets.items()
    }


def row(
    index: int, promoted: bool, run_id: str, validation: Evaluation | None, tested: dict[str, Evaluation] | None
) -> dict[str, Any]:
    """One row of the campaign's table and plot (`tasks/report.py`): validation, and test and OOD where scored."""
    out: dict[str, Any] = {"round": index, "promoted": promoted, "run_id": run_id}
    for prefix, evaluation in (("", validation), *((f"{k}_", v) for k, v in (tested or {}).items())):
        out |= cells(prefix, evaluation)
    return out


def cells(prefix: str, evaluation: Evaluation | None) -> dict[str, Any]:
    """An evaluation's accuracy and 95% interval as a row's cells (`<prefix>accuracy`, ...); None when not scored."""
    metrics = evaluation.metrics if evaluation is not None else {}
    return {f"{prefix}{key}": metrics.get(key) for key in ("accuracy", "ci_low", "ci_high")}


def few_shot_baseline(
    config: CampaignConfig,
    policy: ModelRef,
    tests: dict[str, DatasetRef],
    layout: CampaignLayout,
    ctx: RoundContext,
    results: Path,
) -> dict[str, Evaluation]:
    """The starting policy behind the few-shot prefix on test and OOD (`evaluate.few_shot_baseline`), keyed by
    split as `score` returns them; {} when not asked for or the campaign has no few-shot examples or test set.
    The examples are written in `evaluate.few_shot_working` when set, else in the campaign's working.
    Logged as `test-few-shot/*` and `ood-few-shot/*` at round 0."""
    if not (config.evaluate.few_shot_baseline and config.prompts.few_shot > 0 and "test" in tests):
        return {}
    shot = config.few_shot_baseline_config()
    sets = {f"{split}-few-shot": ref for split, ref in tests.items() if split in ("test", "ood")}
    scored = score(shot, policy, sets, layout, ctx, results)
    return {split.removesuffix("-few-shot"): evaluation for split, evaluation in scored.items()}


def baseline_cells(shot: dict[str, Evaluation]) -> dict[str, Any]:
    """Round 0's cells for the few-shot baseline (`few_shot_test_accuracy`, ..., `few_shot_ood_ci_high`), drawn in
    the campaign's plot as the bar to clear; {} without the baseline."""
    out: dict[str, Any] = {}
    for split, evaluation in shot.items():
        out |= cells(f"few_shot_{split}_", evaluation)
    return out


def few_shot_label(config: CampaignConfig) -> str:
    """Who the few-shot baseline is, in words: 'the starting policy behind 3 worked examples (plain working)'."""
    working = config.few_shot_baseline_config().prompts.working
    shown = f" ({working} working)" if config.prompts.source == "arithmetic" else ""
    return f"the starting policy behind {config.prompts.few_shot} worked examples{shown}"


def final_report(
    config: CampaignConfig,
    start: dict[str, Evaluation],
    final: dict[str, Evaluation],
    ctx: RoundContext,
    key: str = "",
    greedy: bool = False,
    split: str = "test",
) -> FinalClaim | None:
    """The campaign's claim, the final policy (the champion) against the starting one on test, logged as
    `final/*` (per kind of item, `tasks.prompts.item_kind`, as `final/by_kind/<split>/<kind>/*`) and the tag
    `selftrain.final_claim`; with `key` (the few-shot baseline as the start) logged as `final/<key>/*` and the tag
    `selftrain.final_claim.<key>`; with `greedy` (under `evaluate.resample_failed_working`), both sides' greedy
    answers, as `final/<key>/greedy/*` and `selftrain.final_claim.<key>.greedy`. With `split` an extra set
    (`extra/<name>`, as `key` too), the same pair on its items, without OOD or kinds: `final/extra/<name>/*`
    (`accuracy`, `start_accuracy`, `gain`, `p_value`, ...). None when the campaign has no such set."""
    if split not in start or split not in final:
        return None

    def read(ref: DatasetRef) -> list[Record]:
        return greedy_rows(read_records(ref)) if greedy else read_records(ref)

    test = split == "test"
    claim = final_claim(
        read(start[split].ref),
        read(final[split].ref),
        start_ood=read(start["ood"].ref) if test and "ood" in start else None,
        final_ood=read(final["ood"].ref) if test and "ood" in final else None,
        kind_of=item_kind(config) if test else None,
        split=split.removeprefix("extra/"),
    )
    metrics = claim.metrics()
    if not test:
        metrics = {
            name.replace("start_test_", "start_").replace("final/test_", "final/"): v for name, v in metrics.items()
        }
    key = "/".join(part for part in (key, "greedy" if greedy else "") if part)
    if key:
        metrics = {name.replace("final/", f"final/{key}/", 1): value for name, value in metrics.items()}
    ctx.log_metrics(metrics)
    tag = ".".join(("selftrain.final_claim", *key.split("/"))) if key else "selftrain.final_claim"
    set_tags(ctx.tracking, ctx.run_id, {tag: claim.sentence()})
    return claim
