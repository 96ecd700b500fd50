"""Fixtures for the models tests: one tiny model built per session, offline, on one torch thread."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing here may touch the network

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from models.loading import set_torch_threads
from models.tiny import ensure_tiny_model
from tasks.arithmetic import sample_problems, vocabulary_corpus

TINY_WARMUP_STEPS = 40  # enough to learn the answer format, cheap enough to build in ~10 s
TEMPLATE = "Question: {prompt}\nAnswer:"

set_torch_threads(1)

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


@pytest.fixture
def quick_build(warmup_pairs: Callable[[int], Pairs]) -> Callable[..., Path]:
    """Builds an unwarmed tiny model (about a second) under a given root, for cache tests."""

    def build(root: Path, seed: int = 0, steps: int = 0, **kwargs) -> Path:
        return ensure_tiny_model(root, vocabulary_corpus(), warmup_pairs(8), steps=steps, seed=seed, **kwargs)

    return build


@pytest.fixture(scope="session")
def heldout_prompts() -> list[str]:
    """Templated held-out prompts of varied lengths."""
    return [TEMPLATE.format(prompt=p["prompt"]) for p in sample_problems(12, split="heldout", seed=0)]


@pytest.fixture(autouse=True)
def _keep_global_rng() -> Iterator[None]:
    """Tests seed torch freely; forking keeps one test's seeding from leaking into the next."""
    with torch.random.fork_rng(devices=[]):
        yield
