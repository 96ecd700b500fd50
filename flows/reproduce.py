"""`selftrain reproduce RUN_ID`: re-run a past round from what MLflow recorded, and compare every metric.

Everything comes from the MLflow store, not from the round's folder (which may be gone): the round's
`round_input.json` (resolved config, input policy, what the campaign carried into the round, seeds, library
versions), the validation file logged on its campaign run, the incumbent's validation answers logged by the
round, and the input policy's adapter logged by the round that trained it (none when the round started from
the base model, which is rebuilt or re-resolved from the config and checked against the recorded fingerprint),
and the earlier rounds' judged and selected rows the round read (a `train.init: base` round trains a fresh
adapter on the base from all of them; judges and the curriculum read the judged ones), each downloaded from the
run that logged it and checked against its recorded hash. What the round samples itself (GRPO's groups, STaR's
rationales) comes again from the recorded seeds; the filters' reference model is the checked base.
The round runs again into a new folder under a `reproduce` MLflow run tagged `selftrain.reproduces=<RUN_ID>`.
On the CPU with the recorded seeds every metric but the wall-clock timings must match exactly; a data file or
the adapter weights that differ are reported, with the non-determinism sources that differ (library versions,
thread count). A base model whose content hash differs from the recorded one is refused before anything runs (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from configs.schema import CampaignConfig, TrackingConfig
from flows.launch import launch, quiet_defaults, quiet_progress_bars
from flows.reproduce_check import (
    MissingArtifactError,
    check_input_files,
    compare,
    download,
    format_report,
    missing,
    nondeterminism,
)
from tasks.records import DatasetRef, ModelRef, read_records, sha256_dir, sha256_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from flows.round import RoundInputs

# The round machinery (flows.round, MLflow, torch and the models behind them) is imported by the functions that
# run it, so that `selftrain --help` and the other subcommands do not load it: this module is imported for every
# `selftrain` command line (flows/cli.py).

EARLIER = ("earlier", "earlier_selected")  # the RoundInputs fields holding earlier rounds' record files
KIND = "reproduce"  # the re-run's parent run's selftrain.kind tag


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `selftrain reproduce`."""
    parser.add_argument("run_id", help="MLflow run id of a round (a child run of a campaign)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store holding the run (default: MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db)",
    )
    parser.add_argument("--output-dir", default="runs", help="folder for the re-run's data and adapter")


class BaseMismatchError(ValueError):
    """The base model resolved here is not the one the round used (another content hash)."""


class UnknownRunError(ValueError):
    """The run id names no run in the store, a run that is not a round (no recorded round inputs), or a round run
    that did not finish."""


def main(ns: argparse.Namespace) -> int:
    """Reproduce the round, print the comparison; exit status 1 when a non-timing metric differs or the
    base model is another one."""
    quiet_defaults()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_progress_bars()
    uri = ns.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('runs').resolve()}/mlflow.db"
    source = (
        "--tracking-uri " if ns.tracking_uri else "MLFLOW_TRACKING_URI=" if "MLFLOW_TRACKING_URI" in os.environ else ""
    )
    problem = store_problem(uri, source)
    if problem is None:
        from flows.preflight import PreflightError, check_folder

        try:  # a file or an uncreatable folder is one line, before anything is fetched or run
            check_folder(f"--output-dir {ns.output_dir}", Path(ns.output_dir))
        except PreflightError as error:
            problem = str(error)
    if problem:
        print(f"selftrain: error: {problem}", file=sys.stderr)
        return 2
    try:
        prepared = prepare(ns.run_id, uri, ns.output_dir)  # a wrong id or base is one line, before any server
        # Through `launch`, as `run`: Prefect's temporary server dies with this process, Ctrl-C is one line.
        report = launch(lambda: rerun(prepared), preload=["flows.round"])
    except BaseMismatchError as error:
        print(f"selftrain: error: {error}", file=sys.stderr)
        return 1
    except (UnknownRunError, MissingArtifactError) as error:
        print(f"selftrain: error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report["match"] else 1


def store_problem(uri: str, source: str = "") -> str | None:
    """Why the MLflow store at `uri` cannot hold the run, or None: a scheme MLflow has no store for, a file store,
    or a SQLite file that does not exist (which MLflow would create, empty). `source` prefixes the URI in the
    message ("--tracking-uri ", "MLFLOW_TRACKING_URI="; empty for the default, runs/mlflow.db in this folder)."""
    from flows.preflight import PreflightError, check_tracking_uri

    try:
        check_tracking_uri(TrackingConfig(tracking_uri=uri))
    except PreflightError as err:
        return str(err).replace("tracking.tracking_uri=", source, 1)
    from tasks.tracking_store import sqlite_file

    path = sqlite_file(uri)
    if path is not None and not path.is_file():
        hint = "" if source else " (pass --tracking-uri or set MLFLOW_TRACKING_URI)"
        return f"no MLflow store at {path}{hint}"
    return None


def _local_ref(path: Path) -> DatasetRef:
    return DatasetRef(path=str(path), sha256=sha256_file(path), rows=len(read_records(path)))


def fetch_inputs(client: MlflowClient, run_id: str, dest: Path) -> tuple[dict, DatasetRef, Path | None]:
    """The round's recorded inputs, its validation file and its input adapter (None: the base), checked
    against the recorded content hashes."""
    recorded = json.loads(download(client, f"runs:/{run_id}/round_input.json", dest).read_text(encoding="utf-8"))
    validation = _local_ref(download(client, recorded["validation_source"], dest / "validation"))
    if validation.sha256 != recorded["validation"]["sha256"]:
        raise ValueError(f"the logged validation file {recorded['validation_source']} does not match the recorded hash")
    adapter = None
    if recorded["policy_source"]:
        adapter = download(client, recorded["policy_source"], dest / "policy")
        if sha256_dir(adapter) != recorded["policy"]["sha256"]:
            raise ValueError(f"the logged adapter {recorded['policy_source']} does not match the recorded hash")
    return recorded, validation, adapter


def fetch_earlier(client: MlflowClient, run_id: str, recorded: dict, field: str, dest: Path) -> tuple[DatasetRef, ...]:
    """The earlier rounds' record files in the round's `state.<field>`, downloaded from the runs that logged them
    (`<field>_sources` in round_input.json) and checked against the recorded hashes.

    A round recorded before the sources were (no `<field>_sources`) falls back to the recorded local paths when
    they still hold the recorded bytes; otherwise nothing is run.
    """
    refs = [DatasetRef.model_validate(ref) for ref in recorded["state"].get(field, [])]
    sources = recorded.get(f"{field}_sources")
    if sources is None:
        if all(Path(ref.path).is_file() and sha256_file(ref.path) == ref.sha256 for ref in refs):
            return tuple(refs)
        raise ValueError(
            f"run {run_id}: round_input.json has no {field}_sources and its {field} files are gone or changed; "
            "the round's earlier rows cannot be recovered"
        )
    fetched = []
    for index, source in enumerate(sources, start=1):
        uri = f"runs:/{source['run_id']}/{source['path']}"
        local = _local_ref(download(client, uri, dest / field / str(index)))
        if local.sha256 != source["sha256"]:
            raise ValueError(
                f"run {run_id}: {field} file {uri} has sha256 {local.sha256[:16]}..., the round read "
                f"{source['sha256'][:16]}...; nothing was run"
            )
        fetched.append(local)
    return tuple(fetched)


def _round_run(client: MlflowClient, run_id: str, tracking_uri: str) -> Run:
    """The finished round run `run_id`, or an UnknownRunError naming the store (no such run), the round runs to pass
    instead (a campaign run) or the run's status (a round killed, failed or still running)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise UnknownRunError(f"run {run_id}: no such run in {tracking_uri} (--tracking-uri sets the store)") from error
    if "selftrain.round" not in run.data.tags:
        children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
        numbered = sorted((int(c.data.tags.get("selftrain.round", -1)), c.info.run_id) for c in children)
        rounds = ", ".join(f"round {number}: {child}" for number, child in numbered)
        raise UnknownRunError(
            f"run {run_id} is not a round run (no selftrain.round tag); pass one of its rounds' run ids"
            + (f" ({rounds})" if rounds else "")
        )
    if run.info.status != "FINISHED":  # killed, failed or still running: its metrics stop where it stopped
        raise UnknownRunError(
            f"run {run_id} (round {run.data.tags['selftrain.round']}) is {run.info.status}, not finished, so it has no "
            "whole round to compare with; resume its campaign (selftrain run with its config and name), which "
            "finishes this run, then reproduce it"
        )
    return run


def reproduce(run_id: str, tracking_uri: str, output_dir: str) -> dict:
    """Re-run round `run_id` into a new folder and compare its metrics, data and adapter with the original."""
    return rerun(prepare(run_id, tracking_uri, output_dir))


@dataclass(frozen=True)
class Reproduction:
    """What re-running a round needs, fetched from MLflow and checked (`prepare`) before anything runs."""

    client: MlflowClient
    original: Run
    workdir: Path
    config: CampaignConfig
    validation: DatasetRef
    state: RoundInputs
    index: int
    recorded: dict


def prepare(run_id: str, tracking_uri: str, output_dir: str) -> Reproduction:
    """Fetch round `run_id`'s recorded inputs and check them (the run is a round, the base model is the one it
    used, the logged files hold the recorded bytes); nothing runs and nothing is recorded.

    Raises:
        UnknownRunError, BaseMismatchError, MissingArtifactError, ValueError: as named in their messages; the
            re-run's folder is removed again.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    original = _round_run(client, run_id, tracking_uri)
    workdir = Path(output_dir).resolve() / f"reproduce-{run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    made = _firstmissing(workdir)  # what the downloads create: removed again when the round cannot be re-run
    try:
        return _prepare_in(client, original, workdir, tracking_uri, output_dir)
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def _firstmissing(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist (what creating `folder` makes), or None."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _prepare_in(client: MlflowClient, original: Run, workdir: Path, tracking_uri: str, output_dir: str) -> Reproduction:
    """`prepare` once the round run is found, downloading into `workdir`."""
    from flows.round import RoundInputs
    from tasks.base_model import prepare_base

    run_id = original.info.run_id
    recorded, validation, adapter = fetch_inputs(client, run_id, workdir / "inputs")
    saved = CampaignConfig.model_validate(recorded["config"])
    check_input_files(client, original, saved)
    tracking = TrackingConfig(output_dir=output_dir, tracking_uri=tracking_uri, experiment=saved.tracking.experiment)
    config = saved.model_copy(update={"tracking": tracking})
    base = prepare_base(config)
    recorded_base = recorded.get("base_fingerprint")
    if recorded_base and recorded_base != base.sha256:
        raise BaseMismatchError(
            f"run {run_id}: the base model {base.base} has content sha256 {base.sha256[:16]}..., the round "
            f"used {recorded_base[:16]}...: a different base cannot reproduce it; nothing was run"
        )
    policy = base if adapter is None else ModelRef(source=base.source, base=base.base, adapter=str(adapter))
    if adapter is not None:
        policy = policy.model_copy(update={"sha256": sha256_dir(adapter)})
    # The incumbent's validation answers (the gate and the flip monitor compare with them), as logged.
    logged = [a.path for a in client.list_artifacts(run_id, "inputs") if not a.is_dir]
    if len(logged) != 1:  # the one file the round logged there is gone (or others were added)
        raise MissingArtifactError(missing(client, run_id, "inputs/*.jsonl (the incumbent's validation answers)"))
    (incumbent,) = logged
    recorded_state = RoundInputs.model_validate(recorded["state"])
    answers = _local_ref(download(client, f"runs:/{run_id}/{incumbent}", workdir / "inputs"))
    champion = recorded_state.champion.model_copy(update={"ref": answers})
    earlier = {field: fetch_earlier(client, run_id, recorded, field, workdir / "inputs") for field in EARLIER}
    # train.init=base: the fresh adapter starts from the checked base, not the original's local base path.
    update = {"policy": policy, "champion": champion, "base": base, **earlier}
    state = recorded_state.model_copy(update=update)
    return Reproduction(client, original, workdir, config, validation, state, int(recorded["round"]), recorded)


def rerun(prepared: Reproduction) -> dict:
    """Run the prepared round again under a `reproduce-...` run and compare it with the original."""
    from flows.campaign_state import RESULTS_DIR, try_lock
    from flows.interrupt import failure_line, is_interruption
    from flows.liveness import host_name
    from flows.round import round_flow
    from tasks.layout import CampaignLayout, round_seed
    from tasks.tracking import RoundContext, end_run, fail_running, kill_running, start_run

    client, original, workdir, config = prepared.client, prepared.original, prepared.workdir, prepared.config
    validation, state, index, recorded = prepared.validation, prepared.state, prepared.index, prepared.recorded
    tracking, run_id = config.tracking, original.info.run_id
    close_dead_reproductions(tracking)
    lock = try_lock(workdir)  # held while this process lives: a later reproduce sees a free lock as a dead one
    tags = {"selftrain.kind": KIND, "selftrain.reproduces": run_id, "selftrain.dir": str(workdir)}
    parent = start_run(
        tracking,
        f"reproduce-{original.info.run_name}",
        params={"reproduces": run_id},
        tags={**tags, "selftrain.host": host_name()},
    )
    layout = CampaignLayout(workdir)
    ctx = RoundContext(
        tracking=tracking, round=0, seed=round_seed(config.seed, 0), folder=str(layout.round_dir(0)), run_id=parent
    )
    try:
        ctx.log_dataset(validation, name="validation-prompts", context="validation")
        result = round_flow.with_options(result_storage=workdir / RESULTS_DIR)(
            config, index, state, validation, parent, str(workdir)
        )
        report = compare(client, original.info.run_id, result.run_id, layout.round_dir(index))
        report["sources"] = nondeterminism(recorded, config)
        report.update(original=run_id, reproduced=result.run_id, workdir=str(workdir))
        ctx.log_json(workdir / "comparison.json", report)
        ctx.log_metrics({"reproduce/mismatches": float(len(report["mismatches"]))})
        client.set_tag(parent, "selftrain.reproduce.match", str(report["match"]).lower())
    except BaseException as error:
        if is_interruption(error):  # Ctrl-C or SIGTERM: KILLED, as a campaign's runs
            kill_running(tracking, parent)
        else:
            fail_running(tracking, parent, failure_line(error))
        raise
    finally:
        if lock is not None:
            lock.close()
    end_run(tracking, parent)
    return report


def close_dead_reproductions(cfg: TrackingConfig) -> None:
    """Close this host's reproductions whose process died without closing its runs (SIGKILL, the OOM killer, a
    power cut): their runs still RUNNING become FAILED, tagged with why. As for campaigns, a free lock on the
    re-run's folder says its process died, and so does a folder that is gone."""
    from flows.campaign_state import close_dead, try_lock
    from flows.liveness import host_name
    from tasks.tracking import find_runs

    for run in find_runs(cfg, {"selftrain.kind": KIND, "selftrain.host": host_name()}, ("RUNNING",)):
        workdir = Path(run.data.tags.get("selftrain.dir", ""))
        if not workdir.is_dir():
            close_dead(cfg, run, f"its folder {workdir} is gone (found by a later selftrain reproduce)")
            continue
        lock = try_lock(workdir)
        if lock is not None:  # nobody holds it: the process died
            lock.close()
            close_dead(cfg, run, "its process died (found by a later selftrain reproduce)")
