"""GRPO: the verifier as a reward, the per-group statistics by hand, and a short run whose reward rises (tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from configs.schema import DEFAULT_ANSWER_PATTERN, GenerateConfig, TrainConfig
from models.sampling import cut_at_stop
from tasks.arithmetic import sample_problems
from tasks.train_grpo import GroupRecorder, group_summary, train_grpo, verifier_reward

TEMPLATE = "Question: {prompt}\nAnswer:"


def test_the_reward_is_the_strict_verifier_on_the_completion_cut_at_the_stop() -> None:
    reward = verifier_reward(DEFAULT_ANSWER_PATTERN, ["\n"])
    completions = [
        " 3 + 4 = 7. The answer is 7.",
        " 3 + 4 = 7. The answer is 7.\nQuestion: and more",  # what follows the stop is not the response
        " 3 + 4 = 8. The answer is 8.",
        " 7",  # a bare number: no credit in the strict form
        " The answer is 7 or 8.",
    ]
    assert reward(prompts=["q"] * 5, completions=completions, answer=["7"] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_group_statistics_by_hand() -> None:
    recorder = GroupRecorder(lambda prompts, completions, **_: [float(c == "right") for c in completions])
    recorder(prompts=["a", "a", "b", "b"], completions=["right", "wrong", "wrong", "wrong"])
    recorder(prompts=["c", "c"], completions=["right", "right"])
    assert recorder.groups == [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    summary = group_summary(recorder.groups)
    assert summary["reward_mean"] == pytest.approx(0.5)
    assert summary["reward_std"] == pytest.approx(0.5)  # six rewards, three 1s and three 0s
    assert summary["no_signal_share"] == pytest.approx(2 / 3)  # b and c: every sample scored the same


def concise(prompts: list[str], completions: list[str], **_: object) -> list[float]:
    """A format reward the tiny model can move in a few steps: the response (cut at the newline) is short."""
    return [1.0 if len(cut_at_stop(text, ["\n"])) <= 30 else 0.0 for text in completions]


def test_grpo_raises_the_mean_reward_over_a_short_run(tiny_dir: Path, tmp_path: Path) -> None:
    rows = sample_problems(8, split="train", seed=7)
    cfg = TrainConfig(
        method="grpo", batch_size=16, learning_rate=5e-3, grpo={"num_generations": 8, "max_steps": 10, "beta": 0.04}
    )
    gen = GenerateConfig(temperature=1.0, max_new_tokens=16)
    result = train_grpo(
        str(tiny_dir), None, rows, cfg, gen, tmp_path / "adapter", template=TEMPLATE, reward=concise, seed=0
    )

    steps = result.step_rewards
    assert len(steps) == 10 and result.metrics["completions"] == 10 * 16
    first, last = sum(steps[:3]) / 3, sum(steps[-3:]) / 3
    assert first + 0.1 < last, steps  # measured: 0.77 -> 0.98
    assert result.metrics["kl"] > 0.0  # beta > 0: TRL measured the KL to the base (adapters disabled)
    assert all("lora_" in key for key in load_file(tmp_path / "adapter" / "adapter_model.safetensors"))


def odd_length(prompts: list[str], completions: list[str], **_: object) -> list[float]:
    """A reward that tells a group's samples apart, so that a single step has a gradient."""
    return [float(len(text) % 2) for text in completions]


def test_a_continued_adapter_is_saved_alone_and_trained_further(tiny_dir: Path, tmp_path: Path) -> None:
    rows = sample_problems(4, split="train", seed=7)
    cfg = TrainConfig(
        method="grpo", batch_size=8, learning_rate=5e-3, grpo={"num_generations": 4, "max_steps": 1, "beta": 0.04}
    )
    gen = GenerateConfig(temperature=1.0, max_new_tokens=8)

    def run(adapter: Path | None, out: Path) -> dict[str, float]:
        start = str(adapter) if adapter else None
        return train_grpo(
            str(tiny_dir), start, rows, cfg, gen, out, template=TEMPLATE, reward=odd_length, seed=0
        ).metrics

    run(None, tmp_path / "first")
    run(tmp_path / "first", tmp_path / "continued")
    # TRL keeps the continued adapter's starting copy as its KL reference ("ref"); only the trained one is saved.
    assert sorted(p.name for p in (tmp_path / "continued").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    first = load_file(tmp_path / "first" / "adapter_model.safetensors")
    continued = load_file(tmp_path / "continued" / "adapter_model.safetensors")
    assert first.keys() == continued.keys()
    assert any(not first[key].equal(continued[key]) for key in first)  # trained further, not the copy


def test_verifier_reward_under_require_work_gives_a_bare_right_guess_nothing() -> None:
    reward = verifier_reward(DEFAULT_ANSWER_PATTERN, ["\n"], require_work=True)
    completions = [" The answer is 7.", " 3 + 4 = 7. The answer is 7.", " 3 + 4 = 8. The answer is 7."]
    assert reward(["q"] * 3, completions, answer=["7"] * 3) == [0.0, 1.0, 0.0]
    assert verifier_reward(DEFAULT_ANSWER_PATTERN, ["\n"])(["q"], completions[:1], answer=["7"]) == [1.0]
