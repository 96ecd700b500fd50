"""LoRA SFT on the tiny model: only adapter weights change, the loss is finite, the folder holds an adapter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import TrainerCallback
from trl import SFTTrainer

from configs.schema import TrainConfig
from models.loading import load_policy
from tasks.arithmetic import sample_problems
from tasks.train_sft import CompletionLogitsSFTTrainer, make_trainer, train_sft

TEMPLATE = "Question: {prompt}\nAnswer:"


def _examples(n: int) -> list[dict[str, str]]:
    return [
        {"prompt": TEMPLATE.format(prompt=p["prompt"]), "completion": p["solution"]}
        for p in sample_problems(n, split="train", seed=5)
    ]


def test_fresh_adapter_trains_only_lora_and_saves_an_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    base_before = {k: v.clone() for k, v in load_policy(str(tiny_dir))[0].state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3)
    lines: list[str] = []
    metrics = train_sft(str(tiny_dir), None, _examples(32), cfg, tmp_path / "adapter", seed=0, progress=lines.append)

    assert math.isfinite(metrics["loss"]) and metrics["steps"] == 4 and metrics["examples"] == 32
    steps = [line for line in lines if line.startswith("train: step ")]
    assert steps[-1].startswith("train: step 4/4, loss ") and len(steps) == len(set(s.split(",")[0] for s in steps))
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert not list(tmp_path.glob(".adapter.*")), "the scratch folder is removed"
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)
    assert any(name.endswith("lora_B.weight") and w.abs().sum() > 0 for name, w in weights.items())
    base_after = load_policy(str(tiny_dir))[0].state_dict()
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before), "the base is untouched"


@pytest.mark.parametrize("field", ["base_dtype", "head_dtype"])
def test_bfloat16_training_saves_a_float32_adapter_that_loads_on_the_float32_base(
    field: str, tiny_dir: Path, tmp_path: Path
) -> None:
    # train.base_dtype: bfloat16 holds the frozen base in bfloat16 while training; train.head_dtype: bfloat16
    # rounds only the head's products in the loss. Either way the adapter, its gradients and the optimiser stay
    # float32, so what is saved is an ordinary adapter for the float32 policy.
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3, **{field: "bfloat16"})
    metrics = train_sft(str(tiny_dir), None, _examples(32), cfg, tmp_path / "adapter", seed=0)
    assert math.isfinite(metrics["loss"]) and metrics["steps"] == 4
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights and {w.dtype for w in weights.values()} == {torch.float32}
    assert any(name.endswith("lora_B.weight") and w.abs().sum() > 0 for name, w in weights.items())
    policy, _ = load_policy(str(tiny_dir), str(tmp_path / "adapter"))
    assert {p.dtype for p in policy.parameters()} == {torch.float32}
    low, _ = load_policy(str(tiny_dir), dtype=torch.bfloat16)  # what base_dtype's trainer loads
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}


def test_the_trainer_takes_the_head_dtype_resolved_by_the_cpu(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = load_policy(str(tiny_dir), trainable=True)
    auto = TrainConfig(epochs=1, batch_size=8, head_dtype="auto")
    for has_bfloat16, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr("models.loading.cpu_has_bfloat16", lambda has=has_bfloat16: has)
        trainer = make_trainer(model, tokenizer, _examples(8), auto, str(tmp_path / "t"), seed=0, fresh_adapter=True)
        assert cast(CompletionLogitsSFTTrainer, trainer).head_dtype == dtype
        model = cast(PeftModel, trainer.model).unload()  # the next trainer wraps a fresh adapter again


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    """The same tensor names, and every tensor equal up to what a 1e-12 learning rate can move it."""
    return first.keys() == second.keys() and all(
        torch.allclose(first[k], second[k], rtol=0.0, atol=1e-9) for k in first
    )


def test_round_two_starts_from_exactly_round_ones_saved_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3)
    train_sft(str(tiny_dir), None, _examples(16), cfg, tmp_path / "r1", seed=0)
    first = load_file(tmp_path / "r1" / "adapter_model.safetensors")
    # With a learning rate of 1e-12 training cannot move a weight: what round 2 saves is what it started from,
    # and that must be round 1's saved adapter, tensor by tensor. A fresh adapter (seed 1) must fail the check.
    still = cfg.model_copy(update={"learning_rate": 1e-12})
    train_sft(str(tiny_dir), str(tmp_path / "r1"), _examples(16), still, tmp_path / "r2-still", seed=1)
    assert same_weights(first, load_file(tmp_path / "r2-still" / "adapter_model.safetensors"))
    train_sft(str(tiny_dir), None, _examples(16), still, tmp_path / "fresh", seed=1)
    assert not same_weights(first, load_file(tmp_path / "fresh" / "adapter_model.safetensors"))
    # At a real learning rate, round 2 moves round 1's adapter and keeps its shape.
    train_sft(str(tiny_dir), str(tmp_path / "r1"), _examples(16), cfg, tmp_path / "r2", seed=1)
    second = load_file(tmp_path / "r2" / "adapter_model.safetensors")
    assert first.keys() == second.keys() and not same_weights(first, second)


def test_weight_averaging_saves_another_adapter_from_the_same_steps(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3)
    last = train_sft(str(tiny_dir), None, _examples(32), cfg, tmp_path / "last", seed=0)
    averaged_cfg = cfg.model_copy(update={"average_from": 0.5})
    averaged = train_sft(str(tiny_dir), None, _examples(32), averaged_cfg, tmp_path / "swa", seed=0)
    # Averaging reads the weights and never steers them: the same four steps and losses, and the saved weights
    # are the mean after steps 3 and 4 instead of step 4's.
    assert averaged["averaged_steps"] == 2 and "averaged_steps" not in last
    assert (averaged["steps"], averaged["loss"], averaged["final_loss"]) == (4, last["loss"], last["final_loss"])
    first, second = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("last", "swa"))
    assert first.keys() == second.keys() and not same_weights(first, second)


def test_neftune_noise_changes_training_and_is_gone_when_training_ends(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3)
    plain = train_sft(str(tiny_dir), None, _examples(32), cfg, tmp_path / "plain", seed=0)
    noisy_cfg = cfg.model_copy(update={"neftune_alpha": 40.0})
    noisy = train_sft(str(tiny_dir), None, _examples(32), noisy_cfg, tmp_path / "noisy", seed=0)
    # The same seed, rows and steps: only the noise on the embeddings while training tells the two runs apart.
    assert noisy["steps"] == plain["steps"] == 4 and noisy["loss"] != plain["loss"]
    first, second = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("plain", "noisy"))
    assert first.keys() == second.keys() and not same_weights(first, second)
    # The noise is a hook on the embeddings that transformers adds for training and removes at its end, so the
    # trained policy answers without it.
    model, tokenizer = load_policy(str(tiny_dir))
    trainer = make_trainer(model, tokenizer, _examples(8), noisy_cfg, str(tmp_path / "t"), seed=0, fresh_adapter=True)
    embeddings = model.get_input_embeddings()
    hooked: list[bool] = []

    class Seen(TrainerCallback):
        def on_step_end(self, *args: object, **kwargs: object) -> None:
            hooked.append(bool(embeddings._forward_hooks))

    trainer.add_callback(Seen())
    trainer.train()
    assert hooked == [True] and not embeddings._forward_hooks and not hasattr(embeddings, "neftune_noise_alpha")


def test_completion_logits_loss_and_gradients_equal_trls(tiny_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_policy(str(tiny_dir))
    cfg = TrainConfig(batch_size=8, lora_dropout=0.0)
    trainer = make_trainer(model, tokenizer, _examples(8), cfg, str(tmp_path), seed=0, fresh_adapter=True)
    assert isinstance(trainer, CompletionLogitsSFTTrainer)
    peft_model = trainer.model
    peft_model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < int(batch["attention_mask"].sum()) // 2, "prompt tokens carry no loss"
    trainable = [p for p in peft_model.parameters() if p.requires_grad]

    def loss_and_grads(compute, **kwargs) -> tuple[float, list[torch.Tensor]]:
        peft_model.zero_grad()
        loss = compute(peft_model, dict(batch), **kwargs)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in trainable]

    for kwargs in ({}, {"num_items_in_batch": torch.tensor(3 * labelled)}):
        ours, our_grads = loss_and_grads(trainer.compute_loss, **kwargs)
        trls, trl_grads = loss_and_grads(lambda m, b, **kw: SFTTrainer.compute_loss(trainer, m, b, **kw), **kwargs)
        assert math.isfinite(ours) and abs(ours - trls) < 1e-5
        assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(our_grads, trl_grads, strict=True))
    assert trainer._metrics["train"]["mean_token_accuracy"], "TRL's token metrics are still logged"


def test_a_max_length_that_leaves_no_completion_token_names_the_field(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=8)
    with pytest.raises(ValueError, match=r"^train.max_length=8: each of 32 training rows' prompts is that long"):
        train_sft(str(tiny_dir), None, _examples(32), cfg, tmp_path / "adapter", seed=0)
    assert not (tmp_path / "adapter").exists()
