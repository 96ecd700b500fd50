"""Test-session settings: offline, one torch thread, a private Prefect home per session, and resources the
pytest-xdist workers share (`shared_once`: the integration tests' server stack, made once per session)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Before transformers, datasets or prefect are imported: nothing in the tests may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every temporary Prefect server of the session (prefect_test_harness, and each `selftrain` subprocess, which inherits
# this environment) gets 300 s to start: Prefect's 20 s default timed out in CI beside a worker training Gemma.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")

import pytest  # noqa: E402

pytest.register_assert_rewrite("tests.cli")  # run_cli's assert reports as a test's would

from models.loading import set_torch_threads  # noqa: E402
from models.tiny import ensure_tiny_model  # noqa: E402
from tasks.arithmetic import sample_problems, vocabulary_corpus  # noqa: E402

TINY_WARMUP_STEPS = 40  # enough to learn the answer format, cheap enough to build in ~10 s
TEMPLATE = "Question: {prompt}\nAnswer:"

set_torch_threads(1)  # steadier when another process competes for the two cores (shared NOTES)

# Whole files go to the two pytest-xdist workers in collection order (`--dist loadfile --no-loadscope-reorder` in
# pyproject.toml), each worker taking the next file when it finishes one. xdist's default order (files with the most
# tests first) left the one-test integration files, the longest, for last, and one worker ran them while the other
# sat idle: heaviest folders first, so the many short files fill the end.
HEAVY_FIRST = ("tests/integration/", "tests/flows/")

Pairs = list[tuple[str, str]]

# A folder every process of this test session sees: made by the process pytest was started as (the xdist
# controller, or the only process without xdist), inherited by the workers it spawns, and emptied at the end.
SHARED = "SELFTRAIN_TEST_SHARED"
OWNER = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """The session's shared folder (`shared_once`), made by the first process; workers inherit its variable."""
    if SHARED not in os.environ:
        os.environ[SHARED] = tempfile.mkdtemp(prefix="selftrain-tests-")
        config.stash[OWNER] = Path(os.environ[SHARED])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the first process, after every worker has finished: undo what `shared_once` made, newest first."""
    shared = session.config.stash.get(OWNER, None)
    if shared is None:
        return
    for path in sorted(shared.glob("cleanup-*.json"), reverse=True):
        step = json.loads(path.read_text())
        if "killpg" in step:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step["killpg"], signal.SIGKILL)
        if "run" in step:
            subprocess.run(step["run"], env={**os.environ, **step.get("env", {})}, capture_output=True, timeout=120)
        for folder in step.get("remove", []):
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(shared, ignore_errors=True)


def _at_session_end(name: str, **step: object) -> None:
    """Have the first process undo something at the session's end: `killpg` (a process group id), `run` (a
    command, with `env` additions), `remove` (folders); steps run newest first."""
    folder = Path(os.environ[SHARED])
    (folder / f"cleanup-{time.time_ns()}-{name}.json").write_text(json.dumps(step))


def _shared_once(name: str, make: Callable[[], dict]) -> dict:
    """`make()`'s JSON-able result, made by the first process of the session that asks and read by the others.

    The pytest-xdist workers share one server stack this way instead of starting one each. Whatever `make`
    starts outlives the worker that made it: `make` registers its clean-up with `at_session_end`. When `make`
    fails nothing is stored, and the next asker tries again (and fails with its own message).
    """
    folder = Path(os.environ[SHARED])
    done = folder / f"{name}.json"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if `make` raises
        if not done.exists():
            result = json.dumps(make())
            done.write_text(result)
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The folder every process of this test session sees, for what `shared_once`'s `make` creates."""
    return Path(os.environ[SHARED])


@pytest.fixture(scope="session")
def shared_once() -> Callable[[str, Callable[[], dict]], dict]:
    """`shared_once(name, make)`: `make()`'s result, made once per test session whatever the worker."""
    return _shared_once


@pytest.fixture(scope="session")
def at_session_end() -> Callable[..., None]:
    """`at_session_end(name, killpg=..., run=[...], env={...}, remove=[...])`: clean-up for `shared_once`."""
    return _at_session_end


def _warmup_pairs(n: int) -> Pairs:
    problems = sample_problems(n, split="train", seed=1234)
    return [(TEMPLATE.format(prompt=p["prompt"]), p["solution"]) for p in problems]


@pytest.fixture(scope="session")
def warmup_pairs() -> Callable[[int], Pairs]:
    """Makes `n` (templated prompt, solution) pairs from the arithmetic task's training split."""
    return _warmup_pairs


@pytest.fixture(scope="session")
def tiny_build_args() -> dict:
    """The inputs the session's tiny model is built from (to call `ensure_tiny_model` again)."""
    return {"corpus": vocabulary_corpus(), "warmup": _warmup_pairs(256), "steps": TINY_WARMUP_STEPS, "seed": 0}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_build_args: dict) -> Path:
    """A warmed-up tiny model directory, built once per test session."""
    return ensure_tiny_model(tmp_path_factory.mktemp("tiny-cache"), **tiny_build_args)


def _make_prefect_database() -> dict:
    """A Prefect database migrated once (`prefect server database upgrade`), which every temporary server of the
    session starts from as a copy: on a new database a start took 19 s, on a copy 8 s (quiet machine); beside a
    worker training Gemma a start on a new database took 47 s, past Prefect's 20 s timeout in CI."""
    home = Path(os.environ[SHARED]) / "prefect-database"
    home.mkdir(exist_ok=True)
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect), "server", "database", "upgrade", "--yes"]
    env = {k: v for k, v in os.environ.items() if "DATABASE" not in k}  # never a database the user configured
    subprocess.run(command, env={**env, "PREFECT_HOME": str(home)}, check=True, capture_output=True, timeout=600)
    return {"path": str(home / "prefect.db")}  # closed: no write-ahead log beside it


@pytest.fixture(scope="session")
def prefect_database() -> Path:
    """A migrated Prefect database made once per test session, to be copied (never opened) by its users."""
    return Path(_shared_once("prefect-database", _make_prefect_database)["path"])


@pytest.fixture(scope="module")
def prefect_server(prefect_database: Path) -> Iterator[None]:
    """A private temporary Prefect server for a module whose flows run in the test process, so the user's Prefect
    home is never touched: Prefect's `prefect_test_harness`, whose database starts as a copy of the session's."""
    from prefect.testing import utilities

    folder = tempfile.mkdtemp(prefix="prefect-harness-")  # the harness removes it at exit
    shutil.copyfile(prefect_database, Path(folder) / "prefect-test.db")  # the name the harness gives its database
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(utilities, "mkdtemp", lambda: folder)  # the harness's folder for its database
            # None: the harness waits PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (above); its own default is 30 s
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout=None))
        yield


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory, prefect_database: Path) -> dict[str, str]:
    """Environment for `selftrain` subprocesses: a fresh PREFECT_HOME (cached results otherwise leak
    between sessions) whose database starts as a copy of the session's, and no inherited tracking URI or Prefect API."""
    home = tmp_path_factory.mktemp("prefect-home")
    shutil.copyfile(prefect_database, home / "prefect.db")  # the temporary server's database under PREFECT_HOME
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(Path(home)), PYTHONUNBUFFERED="1")
    return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the heavy folders' files first (`HEAVY_FIRST`), keeping every file's tests together and in order."""

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).resolve().relative_to(Path(str(config.rootpath)).resolve()).as_posix()
        return next((index for index, folder in enumerate(HEAVY_FIRST) if path.startswith(folder)), len(HEAVY_FIRST))

    items.sort(key=rank)  # stable
