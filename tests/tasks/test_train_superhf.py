"""SuperHF: its loss on the tiny model, its encoding, a short LoRA run (loss unit tests: tests/models/test_losses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from configs.schema import TrainConfig
from models.loading import load_policy
from models.losses import kl_sft_loss
from models.training import lora_config
from tasks.arithmetic import sample_problems
from tasks.train_superhf import collate, encode_examples, reference_logits, train_superhf

TEMPLATE = "Question: {prompt}\nAnswer:"


def examples(n: int) -> list[dict[str, str]]:
    problems = sample_problems(n, split="train", seed=11)
    return [{"prompt": TEMPLATE.format(prompt=p["prompt"]), "completion": p["solution"]} for p in problems]


def test_superhf_loss_equals_sft_loss_on_the_tiny_model_at_the_start(tiny_dir: Path) -> None:
    # A fresh LoRA (B = 0) makes the policy equal to its reference (adapters disabled): the KL term must vanish
    # and the loss must be the model's own causal-LM loss on the completion tokens.
    model, tok = load_policy(str(tiny_dir))
    model = get_peft_model(model, lora_config(TrainConfig()))
    inputs = collate(encode_examples(tok, examples(6), 128), tok.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
        ref = reference_logits(model, None, inputs)
        loss, ce, kl = kl_sft_loss(out.logits, ref, inputs["labels"], kl_weight=1.0)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_encode_masks_the_prompt_and_appends_eos(tiny_dir: Path) -> None:
    _, tok = load_policy(str(tiny_dir))
    ((ids, labels),) = encode_examples(tok, examples(1), 128)
    prompt_len = len(tok(examples(1)[0]["prompt"])["input_ids"])
    assert labels[:prompt_len] == [-100] * prompt_len and labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tok.eos_token_id


def test_superhf_trains_only_lora_and_continues_against_a_frozen_start(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=8, kl_weight=0.5)
    first = train_superhf(str(tiny_dir), None, examples(16), cfg, tmp_path / "r1", seed=0)
    assert first["steps"] == 2 and torch.isfinite(torch.tensor(first["loss"]))
    assert all("lora_" in key for key in load_file(tmp_path / "r1" / "adapter_model.safetensors"))
    second = train_superhf(str(tiny_dir), str(tmp_path / "r1"), examples(16), cfg, tmp_path / "r2", seed=1)
    # The first step of round 2 starts at its reference, so the KL is small but grows as the adapter moves.
    assert second["kl"] >= 0.0 and torch.isfinite(torch.tensor(second["loss"]))
    assert (
        load_file(tmp_path / "r2" / "adapter_model.safetensors").keys()
        == load_file(tmp_path / "r1" / "adapter_model.safetensors").keys()
    )
