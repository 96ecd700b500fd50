"""Fixtures the judging and reward-model tests share: a hand-labelled set and a reward model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.schema import JudgeConfig
from tasks.records import Record
from tasks.train_reward import correct_wrong_pairs, train_reward_model

REWARD_TEMPLATE = "Question: {prompt}\nAnswer:"


def _labelled_sums() -> list[Record]:
    """Per prompt a + b: two correct responses and two wrong ones."""
    rows: list[Record] = []
    for a, b in [(1, 2), (3, 4), (2, 5), (6, 1), (4, 4), (7, 2)]:
        prompt = f"What is {a} + {b}?"
        for response, correct in [
            (f" {a} + {b} = {a + b}. The answer is {a + b}", True),
            (f" The answer is {a + b}", True),
            (f" {a} + {b} = {a + b + 3}. The answer is {a + b + 3}", False),
            (f" The answer is {a * b + 10}", False),
        ]:
            rows.append({"id": prompt, "prompt": prompt, "response": response, "correct": correct})
    return rows


@pytest.fixture
def labelled_sums() -> list[Record]:
    """24 verifier-labelled rows: 6 sums, each with two correct and two wrong responses (a fresh copy)."""
    return _labelled_sums()


@pytest.fixture(scope="session")
def trained_reward_model(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict]:
    """A reward model trained for a few steps on pairs from `labelled_sums`: (folder, pairs, metrics)."""
    pairs = correct_wrong_pairs(_labelled_sums(), template=REWARD_TEMPLATE, per_prompt=4, seed=0)
    cfg = JudgeConfig(kind="reward-model", reward_epochs=5, reward_learning_rate=1e-2, reward_batch_size=8)
    out = tmp_path_factory.mktemp("rm") / "reward-model"
    metrics = train_reward_model(pairs, str(tiny_dir), out, cfg, seed=0)
    return out, pairs, metrics
