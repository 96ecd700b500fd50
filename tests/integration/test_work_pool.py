"""A campaign on the selftrain-pool process work pool survives the worker running it: two `prefect worker start`
processes on the stack, the campaign deployed from infra/prefect.yaml by `prefect deploy`, the worker running it
killed (SIGKILL, its flow-run process too) while round 1 trains, and `selftrain submit` finishing it on the other
worker once Prefect sees the killed flow run dead: one campaign run and one run per round in MLflow, none left
RUNNING, and every step that had finished read from the cache.

The workers share this machine, so each gets its own SELFTRAIN_HOST (and Prefect home): to each other they are
two machines, and only the Prefect server can say whether the other's campaign is alive (flows/liveness.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
import yaml

from tests.cli import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
POOL, DEPLOYMENT = "selftrain-pool", "selftrain-campaign/pool"
SMALL = [
    "name=pool-it",
    "rounds=2",
    "prompts.train_size=64",
    "prompts.validation_size=64",
    "prompts.test_size=64",
    "prompts.ood_size=32",
    "train.epochs=1",
    "tracking.experiment=work-pool-it",
]
HEARTBEAT = 30  # infra/prefect.yaml's PREFECT_FLOWS_HEARTBEAT_FREQUENCY


def _env(stack: dict, cli_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **cli_env,
        "PREFECT_API_URL": stack["prefect_api"],
        "MLFLOW_TRACKING_URI": stack["mlflow"],
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick up a submitted run within 2 s (default 10)
        "OMP_NUM_THREADS": "1",
        "PWD": str(REPO),  # `prefect deploy` reads {{ $PWD }}: the folder workers change into
        **extra,
    }


@contextlib.contextmanager
def workers(stack: dict, cli_env: dict[str, str], root: Path) -> Iterator[dict[str, subprocess.Popen]]:
    """Two process workers of the pool, each in its own session with its own host name and Prefect home."""
    procs = {}
    try:
        for name in ("worker-a", "worker-b"):
            env = _env(stack, cli_env, SELFTRAIN_HOST=name, PREFECT_HOME=str(root / name))
            with open(root / f"{name}.log", "w") as log:
                procs[name] = subprocess.Popen(
                    [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name", name],
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        yield procs
    finally:
        for proc in procs.values():
            kill_tree(proc.pid)
            proc.wait()


@contextlib.contextmanager
def pool_and_zombie_detection(api_url: str) -> Iterator[None]:
    """`prefect work-pool create selftrain-pool --type process` and `prefect automation create --from-file
    infra/zombie-automation.yaml`, done in this process (a CLI start-up costs 10-20 s on a loaded machine); the
    automation is deleted afterwards."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL, temporary_settings

    automation = AutomationCore.model_validate(yaml.safe_load((REPO / "infra" / "zombie-automation.yaml").read_text()))
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        zombie = client.create_automation(automation)
        try:
            yield
        finally:
            client.delete_automation(zombie)


def kill_tree(pid: int) -> None:
    """SIGKILL the process group of `pid` and of every descendant (a flow run's supervisor has a session of its
    own): the worker's machine going away, as far as this machine can show it."""
    try:
        groups = {os.getpgid(pid)} | {os.getpgid(p.pid) for p in psutil.Process(pid).children(recursive=True)}
    except (psutil.NoSuchProcess, ProcessLookupError):
        return
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def running_worker(procs: dict[str, subprocess.Popen]) -> str:
    """The worker with a flow-run process under it."""
    busy = [name for name, proc in procs.items() if psutil.Process(proc.pid).children(recursive=True)]
    assert len(busy) == 1, busy
    return busy[0]


def test_campaign_killed_with_its_worker_finishes_on_the_other(
    stack: dict, cli_env: dict[str, str], api_settings: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import temporary_settings

    from configs.loader import load_config
    from flows.cli import main
    from flows.liveness import flow_run_verdict

    started = time.perf_counter()
    runs = tmp_path / "runs"
    config = load_config("tiny", [*SMALL, f"tracking.output_dir={runs}"]).model_dump(mode="json")
    env = _env(stack, cli_env, PREFECT_HOME=str(tmp_path / "deployer"))
    with workers(stack, cli_env, tmp_path) as procs, pool_and_zombie_detection(stack["prefect_api"]):
        deploy = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--all",
             "--params", json.dumps({"config": config})],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        with api_settings(stack["prefect_api"]), get_client(sync_client=True) as client:  # type: ignore[operator]
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ]
            first = run_deployment(DEPLOYMENT, timeout=0)
            assert isinstance(first, FlowRun)  # a coroutine only when called from async code
        deadline = time.monotonic() + 300
        while not (scratch := list(runs.glob("*/round-01/.adapter.*"))):  # round 1's trainer is running
            assert time.monotonic() < deadline, "round 1 never started training:\n" + "\n".join(
                (tmp_path / f"{n}.log").read_text()[-2000:] for n in procs
            )
            assert all(proc.poll() is None for proc in procs.values())
            time.sleep(0.05)
        victim = running_worker(procs)
        kill_tree(procs[victim].pid)
        killed_at = time.perf_counter()
        workdir = scratch[0].parents[1]
        done = sorted(workdir.glob("round-01/*.jsonl"))
        mtimes = {path: path.stat().st_mtime_ns for path in [workdir / "validation.jsonl", *done]}
        survivor = next(name for name in procs if name != victim)

        # Resubmitting at once would start a second campaign: the killed run is alive to Prefect until its
        # heartbeats are 2.5 periods old. Wait for that verdict, as the resumed run itself will read it.
        with temporary_settings(
            updates={"api.url": stack["prefect_api"], "flows.heartbeat_frequency": HEARTBEAT}
        ):  # fmt: skip
            while (verdict := flow_run_verdict(str(first.id))) is None or verdict.alive:
                assert time.perf_counter() - killed_at < 3 * HEARTBEAT + 30, verdict
                time.sleep(1)
            dead_after = time.perf_counter() - killed_at
            with get_client(sync_client=True) as client:
                beats = client.read_events(
                    EventFilter(
                        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                        resource=EventResourceFilter(id=[f"prefect.flow-run.{first.id}"]),
                    ),
                    limit=1,  # the server's page is at most 50; `total` counts them all
                ).total
                when_dead = client.read_flow_run(first.id).state
            # `selftrain submit pool --watch` (in this process: the CLI's start-up is not what is tested here)
            status = main(["submit", "pool", "--watch"])
        out = capsys.readouterr().out
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in procs}
        assert status == 0, (out[-2000:], logs[survivor][-4000:])
        assert procs[survivor].poll() is None

    assert beats >= 1  # the killed run had sent heartbeats: its silence, not its absence, made it dead
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", out)
    assert match, out
    second_id = uuid.UUID(match.group(1))
    assert f"resuming campaign {workdir.name}" in logs[survivor]
    assert "round 1: finished before the resume" not in logs[survivor]  # killed mid-round: round 1 reopened
    with api_settings(stack["prefect_api"]), get_client(sync_client=True) as client:  # type: ignore[operator]
        killed, resumed = client.read_flow_run(first.id), client.read_flow_run(second_id)
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[second_id]))
        )
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[second_id, *[s.id for s in subflows]]))
        )
    assert resumed.state_name == "Completed" and killed.state_name == "Crashed"
    states: dict[str, set[str]] = {}
    for task_run in task_runs:
        states.setdefault(task_run.name.split("-", 1)[0], set()).add(str(task_run.state_name))
    cached = {name for name, seen in states.items() if "Cached" in seen}
    assert {"prompts", "evaluate", "generate", "judge", "select"} <= cached, states  # round 0, round 1 to train
    assert "Completed" in states["train"]  # the killed step ran again (and round 2 trained)
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes  # finished steps' files untouched

    tracking = MlflowClient(tracking_uri=stack["mlflow"])
    experiment = tracking.get_experiment_by_name("work-pool-it")
    assert experiment is not None
    every = tracking.search_runs([experiment.experiment_id])
    assert [r.info.status for r in every if r.info.status != "FINISHED"] == []  # no RUNNING orphan
    parents = [r for r in every if r.data.tags.get("selftrain.kind") == "campaign"]
    assert len(parents) == 1 and parents[0].data.tags["selftrain.resumed"] == "1"
    assert parents[0].data.tags["prefect.flow_run_id"] == str(second_id)
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["selftrain.round"] for r in children) == ["1", "2"]
    assert len(every) == 3
    by_round = {r.data.tags["selftrain.round"]: r for r in children}
    assert by_round["1"].data.tags["selftrain.resumed"] == "1" and "selftrain.resumed" not in by_round["2"].data.tags
    with capsys.disabled():
        print(f"\nwork pool: killed {victim} after {killed_at - started:.0f} s, dead to Prefect {dead_after:.0f} s"
              f" later ({beats} heartbeats; then {when_dead.name if when_dead else None}: "
              f"{when_dead.message if when_dead else ''}); finished on {survivor}; "
              f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
