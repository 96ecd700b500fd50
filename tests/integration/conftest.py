"""The real server stack for integration tests: PostgreSQL, Prefect server, MLflow server and a served deployment.

Started once per test session through `infra/start-stack.sh` (the script users run) in a temporary state
folder on free loopback ports, and `selftrain serve` as a subprocess: the pytest-xdist workers share both
(`shared_once` in tests/conftest.py), and the process pytest was started as stops them at the end. A missing
server program is a test failure, not a skip: `bash infra/bootstrap.sh --test` (the README's test set-up, which
`.ci/run` runs) installs PostgreSQL, so its absence means the set-up is broken.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli import REPO, SELFTRAIN, free_port

DEPLOYMENT = "selftrain-campaign/it"
# Smaller than configs/tiny.yaml's defaults where it does not change what is tested; rounds stay 3 so that
# a run asking for 1 round visibly used its own parameters.
SERVE_OVERRIDES = ["prompts.heldout_size=64", "train.epochs=1"]


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="session")
def stack(shared_dir: Path, shared_once: Callable, at_session_end: Callable) -> dict:
    """PostgreSQL + Prefect server + MLflow server from `infra/start-stack.sh`, one for the whole session (the
    xdist workers share it): URLs, DB URIs, state dir. Stopped by the first process at the session's end."""

    def start() -> dict:
        state = shared_dir / "stack"
        state.mkdir()
        env = {
            "PG_PORT": str(free_port()),
            "PREFECT_PORT": str(free_port()),
            "MLFLOW_PORT": str(free_port()),
            "VENV": str(Path(sys.executable).parents[1]),
        }
        script = ["bash", str(REPO / "infra" / "start-stack.sh")]
        started = time.perf_counter()
        try:
            proc = subprocess.run([*script, "start", str(state)], env={**os.environ, **env}, capture_output=True,
                                  text=True, timeout=300)  # fmt: skip
        finally:  # also after a start that failed half-way; the cluster's folder goes after the stop
            record = state / "pgdata.path"
            pgdata = Path(record.read_text().strip()) if record.exists() else None
            fallback = [str(pgdata.parent)] if pgdata and pgdata.parent.name.startswith("selftrain-pg.") else []
            at_session_end("stack", run=[*script, "stop", str(state)], env=env, remove=fallback)
        if proc.returncode != 0:
            pytest.fail(f"infra/start-stack.sh start failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        values = _read_env(state / "env.sh")
        return {
            "state": str(state),
            "prefect_api": values["PREFECT_API_URL"],
            "prefect_ui": values["PREFECT_API_URL"].removesuffix("/api"),
            "mlflow": values["MLFLOW_TRACKING_URI"],
            "mlflow_db": values["SELFTRAIN_MLFLOW_DB"],
            "seconds_to_start": time.perf_counter() - started,
        }

    made = shared_once("stack", start)
    return {**made, "state": Path(made["state"])}


@contextlib.contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Point this process's Prefect client at `url` for the duration (other tests keep their settings)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@pytest.fixture(scope="session")
def served(
    stack: dict, cli_env: dict[str, str], shared_dir: Path, shared_once: Callable, at_session_end: Callable
) -> dict:
    """`selftrain serve configs/tiny.yaml --name it` running against the stack, one for the session; returns the
    deployment and paths. Ended by the first process at the session's end (with its flow-run processes)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    def start() -> dict:
        root = shared_dir / "served"
        root.mkdir()
        log = root / "serve.log"
        env = {
            **cli_env,
            "PREFECT_API_URL": stack["prefect_api"],
            "MLFLOW_TRACKING_URI": stack["mlflow"],
            "PREFECT_HOME": str(root / "prefect-home"),
        }
        command = [SELFTRAIN, "serve", "configs/tiny.yaml", f"tracking.output_dir={root / 'runs'}", *SERVE_OVERRIDES]
        started = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [*command, "--name", "it"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        # Every run the tests started has finished by then: end the serve process and its flow-run processes at
        # once (a graceful stop would first pause the deployment, which has no schedule).
        at_session_end("served", killpg=proc.pid)
        deadline = time.monotonic() + 180
        with prefect_api(stack["prefect_api"]), get_client(sync_client=True) as client:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"selftrain serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no deployment {DEPLOYMENT} after 180 s:\n{log.read_text()[-3000:]}")
                try:
                    client.read_deployment_by_name(DEPLOYMENT)
                    break
                except ObjectNotFound:
                    time.sleep(1)
        print(f"\nstack up in {stack['seconds_to_start']:.0f} s; deployment served after "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        return {"output_dir": str(root / "runs"), "log": str(log)}

    made = shared_once("served", start)
    with prefect_api(stack["prefect_api"]), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    return {"deployment": deployment, "output_dir": Path(made["output_dir"]), "log": Path(made["log"]), "stack": stack}


def wait_for_flow_runs(api_url: str, ids: list[uuid.UUID], timeout: float = 420) -> list:
    """Poll the Prefect API until every flow run is in a final state; return them (fails on timeout)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with prefect_api(api_url), get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in ids]
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                pytest.fail(f"flow runs not finished after {timeout} s: {[(r.name, r.state_name) for r in runs]}")
            time.sleep(2)


# Two campaigns asking for non-default values (the served defaults: rounds 3, k 4, learning rate 0.003).
CHANGES = {
    "a": {"rounds": 1, "generate.k": 2, "train.learning_rate": 0.002},
    "b": {"rounds": 1, "generate.k": 3, "train.learning_rate": 0.004},
}


def with_changes(config: dict, changes: dict) -> dict:
    """A copy of the deployment's default `config` with dotted-key changes applied."""
    out = copy.deepcopy(config)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node[key]
        node[leaf] = value
    return out


@pytest.fixture(scope="session")
def campaigns_started(served: dict, shared_once: Callable) -> dict:
    """Start two campaign runs of the deployment through the Prefect API, as the UI does, without waiting; once
    per session, whichever worker asks first.

    The UI test asks for this fixture too, so its own run overlaps these two: three campaigns on the same
    servers at once, and about a minute and a half less wall time than one after another.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    defaults = served["deployment"].parameters["config"]
    sent = {key: with_changes(defaults, changes) for key, changes in CHANGES.items()}

    def start() -> dict:
        with prefect_api(served["stack"]["prefect_api"]):
            runs = {key: run_deployment(DEPLOYMENT, parameters={"config": cfg}, timeout=0) for key, cfg in sent.items()}
        return {key: str(run.id) for key, run in runs.items()}

    ids = shared_once("campaigns", start)
    with prefect_api(served["stack"]["prefect_api"]), get_client(sync_client=True) as client:
        runs = {key: client.read_flow_run(uuid.UUID(run_id)) for key, run_id in ids.items()}
    return {"sent": sent, "changes": CHANGES, "runs": runs}


@pytest.fixture(scope="session")
def flow_runs_finished() -> object:
    """The `wait_for_flow_runs(api_url, ids, timeout)` helper, as a fixture (test modules share no imports)."""
    return wait_for_flow_runs


@pytest.fixture(scope="session")
def api_settings() -> object:
    """The `prefect_api(url)` context manager, as a fixture."""
    return prefect_api
