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
from tasks.train_superhf import collate, encode_examples, superhf_loss, train_superhf

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
        loss, ce, kl = superhf_loss(model, None, inputs, kl_weight=1.0)  # the trainer's, head at completions only
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_encode_masks_the_prompt_and_appends_eos(tiny_dir: Path) -> None:
    _, tok = load_policy(str(tiny_dir))
    ((ids, labels),) = encode_examples(tok, examples(1), 128)
    prompt_len = len(tok(examples(1)[0]["prompt"])["input_ids"])
    assert labels[:prompt_len] == [-100] * prompt_len and labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tok.eos_token_id


def completion_scores(
    base: Path, adapter: str | None, reference: str | None, batch: list[dict[str, str]]
) -> tuple[float, float]:
    """Token-mean cross-entropy of `adapter`'s policy and its KL to `reference`'s, on one collated batch."""
    policy, tok = load_policy(str(base), adapter)
    ref, _ = load_policy(str(base), reference)
    inputs = collate(encode_examples(tok, batch, TrainConfig().max_length), tok.pad_token_id)
    with torch.no_grad():
        logits, ref_logits = (
            m(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits for m in (policy, ref)
        )
        _, ce, kl = kl_sft_loss(logits, ref_logits, inputs["labels"], kl_weight=0.0)
    return ce.item(), kl.item()


def test_superhf_trains_only_lora_and_continues_from_round_ones_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(learning_rate=1e-2, epochs=1, batch_size=8, kl_weight=0.5)
    first = train_superhf(str(tiny_dir), None, examples(16), cfg, tmp_path / "r1", seed=0)
    assert first["steps"] == 2 and torch.isfinite(torch.tensor(first["loss"]))
    assert all("lora_" in key for key in load_file(tmp_path / "r1" / "adapter_model.safetensors"))

    # Round 2 in one step (one batch of 8, no dropout): its metrics are those of the policy it starts from,
    # measured before the update. Continuing round 1's adapter against a frozen copy of it, the KL is exactly 0
    # and the cross-entropy is round 1's on this batch. A fresh adapter (the base) would have the base's
    # cross-entropy and KL(base || round 1) > 0 against that reference.
    batch = examples(8)
    one_step = cfg.model_copy(update={"lora_dropout": 0.0})
    second = train_superhf(str(tiny_dir), str(tmp_path / "r1"), batch, one_step, tmp_path / "r2", seed=1)
    round1_ce, _ = completion_scores(tiny_dir, str(tmp_path / "r1"), None, batch)
    base_ce, fresh_kl = completion_scores(tiny_dir, None, str(tmp_path / "r1"), batch)
    assert second["steps"] == 1
    assert second["kl"] == pytest.approx(0.0, abs=1e-6)
    assert second["cross_entropy"] == pytest.approx(round1_ce, rel=1e-5)
    assert second["loss"] == pytest.approx(round1_ce, rel=1e-5)  # CE + 0.5 x 0
    # What a fresh start would have shown, far outside the tolerances above:
    assert fresh_kl > 1e-3 and abs(base_ce - round1_ce) > 1e-3
    assert (
        load_file(tmp_path / "r2" / "adapter_model.safetensors").keys()
        == load_file(tmp_path / "r1" / "adapter_model.safetensors").keys()
    )
