"""Fine-tuning step: SuperHF, LoRA SFT on the best-of-k responses plus a KL penalty toward the round's starting policy.

SuperHF (Mukobi et al. 2023) replaces RL's policy gradient with supervised learning on the reward model's
best-of-k samples, and keeps RLHF's KL prior to stay near the starting policy:

    loss = CE(completion tokens) + kl_weight * mean over completion positions of KL(policy || reference)

with the KL over the whole next-token distribution at each completion position (exact, so it is zero
when the two models agree; the loss is `models.losses.scored_kl_sft_loss`, with the LM head applied only at
completion positions, for the policy and the reference alike). The reference is the round's
starting policy: with no adapter yet, the policy with its fresh adapter disabled; otherwise a frozen
copy of the starting adapter. A small torch loop, not TRL's SFTTrainer, because the loss needs the
reference's logits at every step. Tokenisation follows TRL's prompt-completion format (prompt tokens
masked, EOS appended), as `tasks.train_sft` trains.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import torch
from peft import PeftModel, get_peft_model
from prefect import task
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from configs.schema import CampaignConfig, TrainConfig
from models.loading import load_policy, set_torch_threads
from models.losses import IGNORE, completion_logits, scored_kl_sft_loss
from models.training import lora_config, train_then_replace
from tasks.adapter_record import record_adapter
from tasks.layout import RESUMABLE
from tasks.progress import emit
from tasks.records import DatasetRef, ModelRef, read_records
from tasks.select import to_sft_examples
from tasks.tracking import RoundContext


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[dict[str, str]], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """`(input_ids, labels)` per example: prompt + completion + EOS, loss on the completion and EOS only.

    Sequences are cut to `max_length` from the end; an example left without completion tokens is dropped
    (as TRL drops fully truncated examples).
    """
    encoded = []
    for example in examples:
        prompt_ids = tokenizer(example["prompt"])["input_ids"]
        ids = tokenizer(example["prompt"] + example["completion"])["input_ids"] + [tokenizer.eos_token_id]
        labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids) :]
        ids, labels = ids[:max_length], labels[:max_length]
        if any(label != IGNORE for label in labels[1:]):
            encoded.append((ids, labels))
    return encoded


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: `input_ids`, `attention_mask`, `labels` (`-100` on padding)."""
    width = max(len(ids) for ids, _ in batch)
    ids = [row + [pad_id] * (width - len(row)) for row, _ in batch]
    labels = [row + [IGNORE] * (width - len(row)) for _, row in batch]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row, _ in batch]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def reference_logits(
    policy: PeftModel, reference: PreTrainedModel | PeftModel | None, inputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The reference's logits at the completion positions (`completion_logits`): a separate frozen model, or
    (None) the policy with its adapters disabled."""
    context = policy.disable_adapter() if reference is None else contextlib.nullcontext()
    with torch.no_grad(), context:
        logits, _ = completion_logits(policy if reference is None else reference, inputs)
        return logits


def superhf_loss(
    policy: PeftModel, reference: PreTrainedModel | PeftModel | None, inputs: dict[str, torch.Tensor], kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's `(loss, cross_entropy, kl)` as the trainer takes it: policy and reference through
    `completion_logits` (the head only at completion positions), then `scored_kl_sft_loss`."""
    ref = reference_logits(policy, reference, inputs)
    logits, labels = completion_logits(policy, inputs)
    return scored_kl_sft_loss(logits, ref, labels, kl_weight)


def _batches(
    encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, steps: int, seed: int
) -> Iterator[list[tuple[list[int], list[int]]]]:
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while True:
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            if done == steps:
                return
            done += 1
            yield [encoded[i] for i in order[start : start + batch_size]]


def train_superhf(
    base: str,
    adapter: str | None,
    examples: Sequence[dict[str, str]],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train a LoRA adapter with the SuperHF loss and save it to `out_dir`.

    Args:
        base: Base model directory or hub id.
        adapter: The starting policy's adapter directory (continued, and frozen as the reference), or None.
        examples: `{"prompt", "completion"}` dicts.
        cfg: Training settings (`kl_weight`, LoRA and optimiser fields).
        out_dir: Where the adapter is written (replaced whole, never left half-written).
        seed: Seeds LoRA initialisation, dropout and data order.
        progress: Receives one-line progress reports.

    Returns:
        Metrics: `loss`, `cross_entropy`, `kl` (means over steps), `final_loss`, `steps`, `examples`, `seconds`.
    """
    report = progress or (lambda _line: None)
    torch.manual_seed(seed)
    loaded, tokenizer = load_policy(base, adapter, trainable=True)
    reference = None
    if adapter is None:
        model = cast(PeftModel, get_peft_model(loaded, lora_config(cfg)))
    else:
        model = cast(PeftModel, loaded)  # load_policy wraps the base when given an adapter
        reference, _ = load_policy(base, adapter)  # frozen, eval mode
    encoded = encode_examples(tokenizer, examples, cfg.max_length)
    steps = math.ceil(cfg.epochs * math.ceil(len(encoded) / cfg.batch_size)) if encoded else 0
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: max(0.0, 1.0 - step / max(steps, 1)))
    totals = {"loss": 0.0, "cross_entropy": 0.0, "kl": 0.0}
    final = float("nan")
    model.train()
    started = last = time.perf_counter()
    for step, batch in enumerate(_batches(encoded, cfg.batch_size, steps, seed), start=1):
        inputs = collate(batch, tokenizer.pad_token_id)
        loss, cross_entropy, kl = superhf_loss(model, reference, inputs, cfg.kl_weight)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the HF Trainer default, as in train_sft
        optimiser.step()
        schedule.step()
        for key, value in zip(totals, (loss, cross_entropy, kl), strict=True):
            totals[key] += float(value.detach())
        final = float(loss.detach())
        now = time.perf_counter()
        if now - last >= 5.0 or step == steps:
            last = now
            rate = step / max(now - started, 1e-9)
            report(
                f"train(superhf): step {step}/{steps}, loss {final:.4f}, kl {float(kl.detach()):.4f}, {rate:.2f} step/s"
            )
    seconds = time.perf_counter() - started
    model.eval()
    with train_then_replace(out_dir) as scratch:
        model.save_pretrained(str(scratch.result))
    means = {key: value / steps if steps else float("nan") for key, value in totals.items()}
    return {**means, "final_loss": final, "steps": float(steps), "examples": float(len(encoded)), "seconds": seconds}


@task(name="train", **RESUMABLE)
def superhf_train_task(
    config: CampaignConfig, policy: ModelRef, selected: DatasetRef, out_dir: str, ctx: RoundContext
) -> ModelRef | None:
    """SuperHF on the selected (best-of-k) rows; return the new policy, or None when too few rows survived."""
    examples = to_sft_examples(read_records(selected), config.prompts.template)
    if len(examples) < config.train.min_examples:
        emit(f"train(superhf): skipped, {len(examples)} examples < train.min_examples={config.train.min_examples}")
        ctx.log_metrics({"train/skipped": 1.0, "train/examples": float(len(examples))})
        return None
    set_torch_threads(config.model.torch_threads)
    seed = ctx.seed
    train = config.train_for_round(ctx.round)  # the warm start may take its own epochs
    metrics = train_superhf(policy.base, policy.adapter, examples, train, out_dir, seed=seed, progress=emit)
    return record_adapter(config, policy, out_dir, ctx, metrics, seed=seed, data=selected)
