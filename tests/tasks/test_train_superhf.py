"""SuperHF: the KL-regularised SFT loss (unit, and on the tiny model) and a short LoRA run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model
from safetensors.torch import load_file

from configs.schema import TrainConfig
from models.loading import load_policy
from tasks.arithmetic import sample_problems
from tasks.train_sft import lora_config
from tasks.train_superhf import collate, encode_examples, kl_sft_loss, reference_logits, train_superhf

TEMPLATE = "Question: {prompt}\nAnswer:"


def test_kl_term_vanishes_when_policy_and_reference_agree() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    loss, ce, kl = kl_sft_loss(logits, logits.clone(), labels, kl_weight=0.7)
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6) and ce.item() == pytest.approx(plain.item(), rel=1e-6)


def test_kl_term_is_positive_and_weighted_when_they_differ() -> None:
    torch.manual_seed(1)
    logits, ref = torch.randn(1, 4, 7), torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, 2, 3, 4]])
    loss, ce, kl = kl_sft_loss(logits, ref, labels, kl_weight=0.5)
    assert kl.item() > 0 and loss.item() == pytest.approx(ce.item() + 0.5 * kl.item(), rel=1e-6)
    zero, _, _ = kl_sft_loss(logits, ref, torch.full((1, 4), -100), kl_weight=0.5)
    assert zero.item() == 0.0


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
