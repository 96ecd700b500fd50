"""Whether another machine's campaign is alive, as the Prefect server sees its flow run: state and heartbeats.

With a real Prefect server (PREFECT_API_URL set), each flow run's process sends a `prefect.flow-run.heartbeat`
event every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (Prefect 3.8: at least 30, default 180). A campaign on
another machine is alive while its flow run is RUNNING and its newest heartbeat (or, before the first one, its
RUNNING state) is younger than `STALE_BEATS` heartbeat periods; a final state (Crashed, Failed, Completed,
Cancelled: the zombie automation in infra/zombie-automation.yaml marks silent runs Crashed) means dead. On the
campaign's own host the folder lock is the better witness (`flows/campaign_state.py`): the kernel frees it the
moment the process dies, while heartbeats take minutes to go stale.

Each process names its machine by `host_name()`: the hostname, or SELFTRAIN_HOST when set (the integration test
gives its two workers on one machine different names, so that each sees the other as a remote machine).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
from prefect.exceptions import PrefectException

STALE_BEATS = 2.5  # missed heartbeat periods before a RUNNING flow run counts as dead (Prefect's docs use 3)
MIN_HEARTBEAT_SECONDS = 30  # prefect.flow_engine.MINIMUM_HEARTBEAT_INTERVAL (3.8.8)
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class Verdict:
    """Whether a flow run is alive, and why, in words for the tags and log lines."""

    alive: bool
    why: str


def host_name() -> str:
    """This machine's name in the `selftrain.host` tag: SELFTRAIN_HOST when set, else the hostname."""
    return os.environ.get("SELFTRAIN_HOST") or socket.gethostname()


def server_configured() -> bool:
    """Whether a real Prefect server is used (PREFECT_API_URL set, in the environment or the active Prefect
    profile), not the temporary embedded one."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def heartbeat_seconds() -> int | None:
    """The heartbeat period flow runs of this deployment use (the same settings as this process), None when off."""
    from prefect.settings import get_current_settings

    value = get_current_settings().flows.heartbeat_frequency
    return None if value is None else max(value, MIN_HEARTBEAT_SECONDS)


def judge(state: str, last_sign: datetime, now: datetime, period: int | None) -> Verdict:
    """The verdict on a flow run in state `state` (a StateType value) whose newest sign of life is `last_sign`.

    Args:
        state: `RUNNING`, `PENDING`, `CRASHED`, ...
        last_sign: the newest heartbeat, or the time it entered its state when it has sent none.
        now: the present, in the same time zone.
        period: heartbeat period in seconds; None when heartbeats are off (then only a final state says dead).
    """
    if state in FINAL:
        return Verdict(False, f"its flow run is {state.capitalize()}")
    if state != "RUNNING":
        return Verdict(True, f"its flow run is {state.capitalize()}")  # not started yet, or paused: not dead
    silent = (now - last_sign).total_seconds()
    if period is not None and silent >= STALE_BEATS * period:
        return Verdict(False, f"no heartbeat from its flow run for {silent:.0f} s (period {period} s)")
    return Verdict(True, f"its flow run is Running, last sign of life {silent:.0f} s ago")


def flow_run_verdict(flow_run_id: str, *, own_flow_run_id: str | None = None) -> Verdict | None:
    """Ask the Prefect server whether the flow run `flow_run_id` is alive; None when it cannot tell (no server
    configured, no id, or a run this server does not know, e.g. one from an embedded server)."""
    if own_flow_run_id and flow_run_id == own_flow_run_id:
        return Verdict(False, "an earlier attempt of this flow run")  # Prefect retried the flow run itself
    if not server_configured() or not flow_run_id or flow_run_id == "None":
        return None
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is None:
                return None
            last_sign = run.state.timestamp
            if run.state.type.value == "RUNNING":
                beats = client.read_events(
                    EventFilter(
                        occurred=EventOccurredFilter(since=last_sign - timedelta(seconds=1)),
                        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                        resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
                    ),
                    limit=1,
                ).events
                if beats:
                    last_sign = max(last_sign, beats[0].occurred)
    except (ValueError, PrefectException, httpx.HTTPError):
        return None
    return judge(run.state.type.value, last_sign, datetime.now(UTC), heartbeat_seconds())
