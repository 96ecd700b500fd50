"""Liveness: a flow run's verdict from its state and heartbeats, and which witness `open_campaign` trusts for
a campaign of this host (its folder lock) and of another host (the Prefect server only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from configs.loader import load_config
from flows.campaign_state import open_campaign
from flows.liveness import flow_run_verdict, host_name, judge
from tasks.tracking_store import client_for

NOW = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_running_is_alive_until_two_and_a_half_heartbeat_periods_pass_silently() -> None:
    assert judge("RUNNING", ago(74.9), NOW, 30).alive  # 2.5 x 30 s = 75 s
    stale = judge("RUNNING", ago(75), NOW, 30)
    assert not stale.alive and stale.why == "no heartbeat from its flow run for 75 s (period 30 s)"
    assert judge("RUNNING", ago(449), NOW, 180).alive and not judge("RUNNING", ago(450), NOW, 180).alive
    assert judge("RUNNING", ago(36_000), NOW, None).alive  # heartbeats off: silence proves nothing


@pytest.mark.parametrize("state", ["CRASHED", "FAILED", "COMPLETED", "CANCELLED"])
def test_a_final_state_is_dead_however_fresh(state: str) -> None:
    verdict = judge(state, ago(0), NOW, 30)
    assert not verdict.alive and verdict.why == f"its flow run is {state.capitalize()}"


@pytest.mark.parametrize("state", ["SCHEDULED", "PENDING", "PAUSED"])
def test_a_run_not_started_or_paused_is_alive_however_old(state: str) -> None:
    assert judge(state, ago(36_000), NOW, 30).alive


def test_an_earlier_attempt_of_this_flow_run_is_dead_and_an_unknown_run_is_unknown() -> None:
    own = "6f1c0f5e-0000-0000-0000-000000000001"
    verdict = flow_run_verdict(own, own_flow_run_id=own)
    assert verdict is not None and not verdict.alive  # Prefect retried this flow run: its campaign is ours
    assert flow_run_verdict("", own_flow_run_id="x") is None and flow_run_verdict("None") is None


def test_another_hosts_campaign_is_left_alone_without_a_server_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=liveness-unit"])
    client = client_for(config.tracking)
    monkeypatch.setenv("SELFTRAIN_HOST", "worker-a")
    remote = open_campaign(config)  # "worker-a" runs it, then dies: its folder lock is free
    remote.release()
    assert client.get_run(remote.parent_run_id).data.tags["selftrain.host"] == "worker-a"
    monkeypatch.setenv("SELFTRAIN_HOST", "worker-b")
    assert host_name() == "worker-b"
    other = open_campaign(config)  # no flow run a server knows: a free lock on another host proves nothing
    assert not other.resumed and other.parent_run_id != remote.parent_run_id
    assert client.get_run(remote.parent_run_id).info.status == "RUNNING"
    assert "selftrain.failure" not in client.get_run(remote.parent_run_id).data.tags
    other.release()
    monkeypatch.setenv("SELFTRAIN_HOST", "worker-a")  # back on its own host, the free lock decides
    resumed = open_campaign(config)
    assert resumed.resumed and resumed.parent_run_id == remote.parent_run_id
    assert client.get_run(other.parent_run_id).info.status == "RUNNING"  # worker-b's: not this host's to judge
    resumed.release()
