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
sees its folder may resume it once its flow run crashed.

`open_campaign` resumes the newest campaign with the same key whose parent run is not FINISHED and
whose lock is free; a FINISHED campaign is never reopened (the same config again is a new campaign).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from uuid import UUID

import httpx
from prefect.exceptions import PrefectException

from configs.loader import flatten
from configs.schema import CampaignConfig
from flows.liveness import flow_run_verdict, host_name
from tasks.progress import emit
from tasks.tracking import fail_running, find_runs, reopen_run, set_tags, start_run

RESULTS_DIR = ".prefect-results"  # Prefect's persisted task results (the resume cache), per campaign


OUTSIDE_IDENTITY = (  # where results go, how fast it runs (shards give the same samples: seeded per prompt)
    "tracking",
    "model.torch_threads",
    "generate.shards",
    "evaluate.shards",
    "scale",
    "storage",
)


def outside_identity(dotted: str) -> bool:
    """Whether a config field (`section.field`) is left out of the campaign's identity (`campaign_key`)."""
    return any(dotted == field or dotted.startswith(field + ".") for field in OUTSIDE_IDENTITY)


def campaign_key(config: CampaignConfig) -> str:
    """A hash of everything in the config that can change a campaign's results."""
    data = config.model_dump(mode="json")
    for field in OUTSIDE_IDENTITY:
        *path, last = field.split(".")
        section = data
        for name in path:
            section = section[name]
        section.pop(last)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


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
    """A campaign this process holds: its id, folder, parent MLflow run and folder lock."""

    campaign_id: str
    workdir: Path
    parent_run_id: str
    resumed: bool
    lock: IO[str]

    @property
    def results(self) -> Path:
        """Where Prefect persists task results for this campaign (survives a crash, dies with the folder)."""
        return self.workdir / RESULTS_DIR

    def release(self) -> None:
        """Drop the folder lock."""
        self.lock.close()


def try_lock(workdir: Path) -> IO[str] | None:
    """Take the campaign folder's exclusive lock without waiting; None when a live process holds it."""
    handle = open(workdir / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 (held for the campaign's life)
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
    cfg, key = config.tracking, campaign_key(config)
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
        if not workdir.is_dir():
            continue  # its folder is gone (or not shared with this machine): nothing to check or resume here
        reason = "its process died (found by a later selftrain run)"
        if tags.get("selftrain.host") != host_name():  # another machine's: only the Prefect server can tell
            verdict = flow_run_verdict(tags.get("prefect.flow_run_id", ""), own_flow_run_id=flow_run_id)
            if verdict is None or verdict.alive:
                continue
            reason = f"its process died: {verdict.why} (found by a selftrain run on {host_name()})"
        lock = try_lock(workdir)
        if lock is None:
            continue  # its process is alive (on this host, whatever Prefect says)
        failed = fail_running(cfg, run.info.run_id, reason)
        if failed:
            emit(f"campaign {tags.get('selftrain.campaign_id')}: {reason}; marked {len(failed)} run(s) FAILED")
            crash_flow_runs([r.data.tags.get("prefect.flow_run_id", "") for r in failed])
        if resumable is None and tags.get("selftrain.campaign_key") == key and not fresh:
            resumable = Campaign(tags["selftrain.campaign_id"], workdir, run.info.run_id, True, lock)
        else:
            lock.close()
    if resumable is not None:
        reopen_run(cfg, resumable.parent_run_id)
        set_tags(cfg, resumable.parent_run_id, {"prefect.flow_run_id": str(flow_run_id), **recorded_config(config)[1]})
        emit(f"resuming campaign {resumable.campaign_id} in {resumable.workdir}")
        return resumable
    return _new_campaign(config, key, flow_run_id)


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


def _new_campaign(config: CampaignConfig, key: str, flow_run_id: str | None) -> Campaign:
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
    parent = start_run(
        config.tracking,
        config.name,
        params=params,
        tags={
            **config_tags,
            "selftrain.kind": "campaign",
            "selftrain.campaign_id": campaign_id,
            "selftrain.campaign_key": key,
            "selftrain.dir": str(workdir),
            "selftrain.host": host_name(),
            "prefect.flow_run_id": flow_run_id,
        },
    )
    emit(f"new campaign {campaign_id} in {workdir}")
    return Campaign(campaign_id, workdir, parent, False, lock)
