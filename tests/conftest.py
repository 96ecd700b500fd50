"""Test-session settings: offline, one torch thread, and a private Prefect home per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# Before transformers, datasets or prefect are imported: nothing in the tests may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `selftrain` subprocesses: a fresh PREFECT_HOME (cached results otherwise leak
    between sessions) and no inherited tracking URI or Prefect API."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(Path(home)), PYTHONUNBUFFERED="1")
    return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the heavy folders' files first (`HEAVY_FIRST`), keeping every file's tests together and in order."""

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).resolve().relative_to(Path(str(config.rootpath)).resolve()).as_posix()
        return next((index for index, folder in enumerate(HEAVY_FIRST) if path.startswith(folder)), len(HEAVY_FIRST))

    items.sort(key=rank)  # stable
