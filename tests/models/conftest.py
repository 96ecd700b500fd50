"""Fixtures for the models tests (the session's tiny model lives in tests/conftest.py)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing here may touch the network

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from models.tiny import ensure_tiny_model
from tasks.arithmetic import sample_problems, vocabulary_corpus

TEMPLATE = "Question: {prompt}\nAnswer:"
Pairs = list[tuple[str, str]]


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
