"""Which campaign a run belongs to: a new one, or the unfinished one with the same config, resumed.

A campaign's identity is its `key`, a hash of the resolved config without the fields that only say
where results go (`tracking`) or how fast it runs (`model.torch_threads`); those are recorded as tags, which a
resumed campaign may change, the rest as params, which MLflow keeps fixed. Each campaign gets its own
folder `<output_dir>/<campaign_id>` (`<name>-<yyyymmdd-hhmmss>-<6 hex>`), so two campaigns never share
files, even with the same config on the same servers. The process running a campaign holds an
exclusive lock on `<folder>/.lock`; the kernel drops it when the process dies (even on SIGKILL), so a
free lock on a campaign MLflow still calls RUNNING means its process is dead. That witness works on the
campaign's own host only: a campaign another machine ran (a worker of a work pool) is judged by the Prefect
server, alive while its flow run is Running with fresh heartbeats (`flows/liveness.py`), so any worker that
sees its folder may resume it once its flow run crashed. With `storage.base` an object-store URL the folder is a
local working copy mirrored to `<base>/<campaign_id>` (`tasks/storage_mirror.py`, URL in the tag
`selftrain.storage`): a resume on a host that lacks the folder fetches it to the path in `selftrain.dir` (the
same path, so the cached steps' inputs, which name their files, match), then takes the lock there.

`open_campaign` resumes the newest campaign with the same key whose parent run is not FINISHED and
whose lock is free; a FINISHED campaign is never reopened (the same config again is a new campaign).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from uuid import UUID

import httpx
from prefect.exceptions import PrefectException

from configs.identity import identity_data, outside_identity
from configs.loader import flatten
from configs.schema import CampaignConfig, TrackingConfig
from flows.liveness import flow_run_verdict, host_name
from tasks.progress import emit
from tasks.records import sha256_file
from tasks.storage_mirror import LOCK, Manifest, pull_tree, push_tree
from tasks.tracking import (
    fail_running,
    find_runs,
    kill_running,
    log_params_again,
    reopen_run,
    set_tags,
    start_run,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

RESULTS_DIR = ".prefect-results"  # Prefect's persisted task results (the resume cache), per campaign


def campaign_key(config: CampaignConfig, files: dict[str, str] | None = None) -> str:
    """A hash of everything in the config that can change a campaign's results (`configs.identity`) and of the
    bytes of the files it reads its prompts and references from (`input_files`, or `files` when the caller has
    them): the same config over an edited file is another campaign, not a resume that would mix draws from both
    versions."""
    files = input_files(config) if files is None else files
    data = {**identity_data(config), **({"input_files": files} if files else {})}
    if config.prompts.source == "file" and not config.prompts.validation_path:
        # Validation carved by problem since 2026-12-07 (by id before): a campaign carved the old way starts anew
        # rather than resuming with rows it trained on moved into its validation split.
        data["carved_by"] = "problem, else id"
    return _key(data)


def config_key(config: CampaignConfig) -> str:
    """`campaign_key` without the files' bytes: finds a campaign whose files have changed since (a note)."""
    return _key(identity_data(config))


def _key(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def input_files(config: CampaignConfig) -> dict[str, str]:
    """The sha256 of each file the campaign reads prompts or Meta Ranking references from, by its config field
    (`prompts.train_path`, `judge.bank_path`, `evaluate.extra_sets.<name>`); {} for the built-in task."""
    return {field: sha256_file(path) for field, path in input_paths(config).items() if Path(path).is_file()}


def input_paths(config: CampaignConfig) -> dict[str, str]:
    """The files the campaign reads prompts or Meta Ranking references from, by the config field `input_files`
    names them with."""
    prompts = config.prompts
    fields: dict[str, str | None] = {}
    if prompts.source == "file":
        fields |= {
            f"prompts.{split}_path": getattr(prompts, f"{split}_path") for split in ("train", "validation", "test")
        }
    if config.judge.bank == "file":
        fields["judge.bank_path"] = config.judge.bank_path
    fields |= {f"evaluate.extra_sets.{extra.name}": extra.path for extra in config.evaluate.extra_sets}
    return {field: path for field, path in fields.items() if path}


def note_changed_inputs(config: CampaignConfig, files: dict[str, str]) -> None:
    """A note for the newest unfinished campaign with this config whose input files (`files`: `input_files`) have
    changed since it started: a new campaign starts instead of resuming it (restore the files to resume it)."""
    if not files:
        return
    for run in find_runs(config.tracking, {"selftrain.config_key": config_key(config)}, ("FAILED", "KILLED")):
        tags = run.data.tags
        recorded = json.loads(tags.get("selftrain.input_files", "{}"))
        changed = sorted(field for field in files.keys() | recorded.keys() if files.get(field) != recorded.get(field))
        if changed:
            emit(
                f"campaign {tags.get('selftrain.campaign_id')} has this config but was started with other contents "
                f"of {', '.join(changed)}: not resumed (restore those files to resume it)"
            )
            return


def recorded_config(config: CampaignConfig) -> tuple[dict[str, str], dict[str, str]]:
    """The resolved config as (MLflow params, tags): fields outside the identity become `selftrain.config.*`
    tags, because a resumed campaign may change them and MLflow refuses a param's second value."""
    params, tags = {}, {}
    for key, value in flatten(config).items():
        if outside_identity(key):
            tags[f"selftrain.config.{key}"] = value
        else:
            params[key] = value
    return params, tags


@dataclass
class Campaign:
    """A campaign this process holds: its id, folder, parent MLflow run, folder lock and the URL the folder is
    mirrored to ("" for none) with what was last pushed there."""

    campaign_id: str
    workdir: Path
    parent_run_id: str
    resumed: bool
    lock: IO[str]
    mirror: str = ""
    pushed: Manifest = dataclasses.field(default_factory=dict)

    @property
    def results(self) -> Path:
        """Where Prefect persists task results for this campaign (survives a crash, dies with the folder)."""
        return self.workdir / RESULTS_DIR

    def push(self) -> None:
        """Copy the folder's new and changed files to its mirror, if it has one (`tasks.storage_mirror`)."""
        if self.mirror:
            self.pushed = push_tree(self.workdir, self.mirror, self.pushed)

    def release(self) -> None:
        """Drop the folder lock."""
        self.lock.close()


def try_lock(workdir: Path) -> IO[str] | None:
    """Take the campaign folder's exclusive lock without waiting; None when a live process holds it."""
    handle = open(workdir / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held for the campaign's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{host_name()} {os.getpid()}\n")
    handle.flush()
    return handle


def open_campaign(config: CampaignConfig, *, fresh: bool = False, flow_run_id: str | None = None) -> Campaign:
    """Resume the newest unfinished campaign with this config (unless `fresh`), else start a new one.

    Every campaign whose process died is closed first: its RUNNING runs become FAILED, tagged with why. On this
    host a free folder lock says the process died; another host's campaign is dead when the Prefect server
    says its flow run is (`flows.liveness`), and is skipped when no server can tell.
    """
    files = input_files(config)  # hashed once: the key, the note and the new campaign's tags
    cfg, key = config.tracking, campaign_key(config, files)
    same = [] if fresh else find_runs(cfg, {"selftrain.campaign_key": key}, ("RUNNING", "FAILED", "KILLED"))
    running = find_runs(cfg, {"selftrain.kind": "campaign"}, ("RUNNING",))
    resumable = None
    seen: set[str] = set()
    for run in same + running:  # resume candidates first, newest first
        tags = run.data.tags
        workdir = Path(tags.get("selftrain.dir", ""))
        if run.info.run_id in seen or tags.get("selftrain.kind") != "campaign":
            continue
        seen.add(run.info.run_id)
        wanted = resumable is None and tags.get("selftrain.campaign_key") == key and not fresh  # the one to resume
        stored = "" if workdir.is_dir() or not wanted else tags.get("selftrain.storage", "")
        if not workdir.is_dir() and not stored:
            if tags.get("selftrain.host") == host_name() and run.info.status == "RUNNING":
                # Its folder is gone from this machine: nothing to resume, and its runs would stay RUNNING forever.
                close_dead(cfg, run, f"its folder {workdir} is gone (found by a later selftrain run)")
            elif wanted:
                emit(f"campaign {tags.get('selftrain.campaign_id')}: not resumed, its folder {workdir} is gone")
            continue  # nothing to check or resume here (or the folder is not shared with this machine)
        reason = "its process died (found by a later selftrain run)"
        if tags.get("selftrain.host") != host_name():  # another machine's: only the Prefect server can tell
            verdict = flow_run_verdict(tags.get("prefect.flow_run_id", ""), own_flow_run_id=flow_run_id)
            if verdict is None or verdict.alive:
                continue
            reason = f"its process died: {verdict.why} (found by a selftrain run on {host_name()})"
        pulled = fetch_working_copy(stored, workdir) if stored else {}
        if pulled is None:
            continue  # it died before its first push: nothing to resume from
        lock = try_lock(workdir)
        if lock is None:
            continue  # its process is alive (on this host, whatever Prefect says)
        close_dead(cfg, run, reason)
        if wanted:
            campaign_id = tags["selftrain.campaign_id"]
            mirror = config.storage.mirror(campaign_id)  # this run's storage.base (it may have changed)
            known = pulled if stored == mirror else {}  # what the mirror already holds
            resumable = Campaign(campaign_id, workdir, run.info.run_id, True, lock, mirror, known)
        else:
            lock.close()
    if resumable is not None:
        with closed_on_failure(config, resumable):
            reopen_run(cfg, resumable.parent_run_id)
            params, config_tags = recorded_config(config)
            # None new, unless its process died before logging them; the campaign's identity keeps the values.
            log_params_again(cfg, resumable.parent_run_id, params)
            mirrored = {"selftrain.storage": resumable.mirror} if resumable.mirror else {}
            update = {"prefect.flow_run_id": str(flow_run_id), **mirrored, **config_tags}
            set_tags(cfg, resumable.parent_run_id, update)
            emit(f"resuming campaign {resumable.campaign_id} in {resumable.workdir}")
        return resumable
    if not fresh:
        note_changed_inputs(config, files)
    return _new_campaign(config, key, flow_run_id, files)


def close_dead(cfg: TrackingConfig, run: Run, reason: str) -> None:
    """Close a dead campaign (or reproduction): its RUNNING runs become FAILED with `reason` (`selftrain.failure`)
    and their Prefect flow runs Crashed, and one line says so."""
    failed = fail_running(cfg, run.info.run_id, reason)
    if failed:
        tags = run.data.tags
        kind, name = tags.get("selftrain.kind", "campaign"), tags.get("selftrain.campaign_id") or run.info.run_name
        emit(f"{kind} {name}: {reason}; marked {len(failed)} run(s) FAILED")
        crash_flow_runs([r.data.tags.get("prefect.flow_run_id", "") for r in failed])


@contextlib.contextmanager
def closed_on_failure(config: CampaignConfig, campaign: Campaign) -> Iterator[None]:
    """While a campaign is being opened (its parent run RUNNING, nothing yet in charge of closing it): on Ctrl-C or
    SIGTERM mark its runs KILLED (tagged interrupted), on an error FAILED, release its lock, and re-raise."""
    from flows.interrupt import is_interruption

    try:
        yield
    except BaseException as error:
        if is_interruption(error):
            kill_running(config.tracking, campaign.parent_run_id)
        else:
            fail_running(config.tracking, campaign.parent_run_id, "the campaign raised while it was being opened")
        campaign.release()
        raise


def fetch_working_copy(url: str, workdir: Path) -> Manifest | None:
    """Fetch a campaign folder from its mirror into `workdir` (absent on this host); None when nothing is stored
    there (its process died before its first push)."""
    try:
        pulled = pull_tree(url, workdir)
    except FileNotFoundError:
        return None
    emit(f"fetched {len(pulled)} files of the campaign folder from {url} into {workdir}")
    return pulled


def crash_flow_runs(flow_run_ids: list[str]) -> None:
    """Mark the Prefect flow runs of a dead process Crashed, as a server with heartbeats would (best effort:
    the embedded server runs without heartbeats, and another server may not know these runs)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    ids = [i for i in flow_run_ids if i and i != "None"]
    if not ids:
        return
    with get_client(sync_client=True) as client:
        for flow_run_id in ids:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
                if run.state is not None and not run.state.is_final():
                    client.set_flow_run_state(
                        run.id, Crashed(message="its process died; marked by selftrain"), force=True
                    )
                    emit(f"Prefect flow run {run.name!r} of the dead process marked Crashed")
            except (ValueError, PrefectException, httpx.HTTPError):  # unknown id or server: nothing to mark
                continue


def _new_campaign(config: CampaignConfig, key: str, flow_run_id: str | None, files: dict[str, str]) -> Campaign:
    while True:
        campaign_id = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        workdir = config.storage.root(config.tracking.output_dir) / campaign_id
        try:
            workdir.mkdir(parents=True)
            break
        except FileExistsError:
            continue
    lock = try_lock(workdir)  # before the run exists, so no other process can take it for a dead one
    assert lock is not None
    params, config_tags = recorded_config(config)
    mirror = config.storage.mirror(campaign_id)
    parent = start_run(
        config.tracking,
        config.name,
        params=params,
        tags={
            **config_tags,
            "selftrain.kind": "campaign",
            "selftrain.campaign_id": campaign_id,
            "selftrain.campaign_key": key,
            "selftrain.config_key": config_key(config),
            "selftrain.input_files": json.dumps(files, sort_keys=True),
            "selftrain.dir": str(workdir),
            "selftrain.host": host_name(),
            "prefect.flow_run_id": flow_run_id,
            **({"selftrain.storage": mirror} if mirror else {}),
        },
    )
    campaign = Campaign(campaign_id, workdir, parent, False, lock, mirror)
    with closed_on_failure(config, campaign):
        emit(f"new campaign {campaign_id} in {workdir}" + (f", mirrored to {mirror}" if mirror else ""))
    return campaign
