"""Build (once, cached on disk) a tiny Llama and its tokenizer from scratch, warmed up on seed examples.

The tiny model is what tests, CI and fast configs train: a few hundred thousand to a few million
parameters, a byte-level BPE tokenizer trained on the task's own vocabulary, and a short supervised
warm-up so that it already knows the answer format and is partly right. Nothing is downloaded.

A build is keyed by a hash of its inputs and `VERSION`, made in a temporary directory inside the cache
root and renamed into place, so a crashed or concurrent build never leaves a directory that looks done.
It carries a content record (`models.integrity`): a build whose files were damaged since (truncated,
overwritten) or that has no record is rebuilt, from the same seed, to the same bytes.

Measured here (one torch thread): 150 warm-up steps on 512 arithmetic pairs (operands 1..9) build a
0.9M-parameter model in ~36 s that answers 21-29% of held-out problems greedily (seeds 0-2) and 45-54%
within 4 samples at temperature 0.8: right often enough to find good samples, wrong often enough to
leave self-training something to fix. 100 steps gave ~16% greedy, 200 steps 44-71%.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.integrity import REQUIRED_FILES, DamagedModelError, check_record, write_record

# torch, tokenizers and transformers are imported by the functions that build: preflight reads MAX_POSITIONS
# here for `selftrain validate`, which must not load them (tests/flows/test_cli.py).
if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# Bump when the architecture, tokenizer recipe or warm-up loop changes: it invalidates every cached build.
VERSION = "1"

PAD, EOS, BOS = "<pad>", "<eos>", "<bos>"
VOCAB_SIZE = 512  # a target: BPE stops early when the corpus has no more pairs to merge
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 128, 4, 4, 384
MAX_POSITIONS = 256
# The weighted modules of the tiny Llama (its weights' names less .weight): what `train.target_modules` may name.
MODULE_NAMES = (
    "model.embed_tokens",
    "model.norm",
    *(
        f"model.layers.{layer}.{module}"
        for layer in range(LAYERS)
        for module in (
            *(f"self_attn.{proj}_proj" for proj in "qkvo"),
            *(f"mlp.{proj}_proj" for proj in ("gate", "up", "down")),
            "input_layernorm",
            "post_attention_layernorm",
        )
    ),
)
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
WARMUP_SHARE = 0.1  # share of the steps spent ramping the learning rate up


def _sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() and (path / name).stat().st_size > 0 for name in REQUIRED_FILES)


def build_tokenizer(corpus: Sequence[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, with one token per digit (`train_tokenizer`), as transformers
    loads it.

    No special token is added around the text: TRL appends the EOS itself and the campaign's prompts carry their
    own template.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(corpus),
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        padding_side="left",
        model_max_length=MAX_POSITIONS,
    )


def train_tokenizer(corpus: Sequence[str]) -> Tokenizer:
    """The tiny model's byte-level BPE tokenizer trained on `corpus`, as `tokenizers` holds it (a twentieth of a
    second on the tiny config's corpus; no transformers import, so preflight measures answers with it).

    Byte-level BPE round-trips any text exactly. Splitting digits first means numbers are spelled
    digit by digit, so arithmetic facts are shared across numbers instead of memorised per token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, EOS, BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama sized for this CPU, its vocabulary exactly the tokenizer's."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # generate() reads its stop token from here; it must be the EOS that SFT appends.
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return model


def _encode_pairs(
    tokenizer: PreTrainedTokenizerFast, pairs: Sequence[tuple[str, str]]
) -> list[tuple[list[int], list[int]]]:
    # Prompt and completion are encoded apart, exactly as generation sees them (prompt, then new tokens).
    out = []
    for prompt, completion in pairs:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        out.append((prompt_ids, [*completion_ids, tokenizer.eos_token_id]))
    return out


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    import torch

    width = max(len(p) + len(c) for p, c in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (prompt, completion) in enumerate(examples):
        ids = prompt + completion
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, len(prompt) : len(ids)] = torch.tensor(completion)  # loss on completion + EOS only
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def warm_up(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    pairs: Sequence[tuple[str, str]],
    *,
    steps: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> float:
    """Supervised fine-tuning on (prompt, completion) pairs with a plain AdamW loop.

    Returns:
        The mean loss of the last tenth of the steps (NaN when `steps` is 0 or there are no pairs).
    """
    import torch

    if steps <= 0 or not pairs:
        return float("nan")
    examples = _encode_pairs(tokenizer, pairs)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01, betas=(0.9, 0.98))
    ramp = max(1, int(WARMUP_SHARE * steps))

    def lr_factor(step: int) -> float:  # linear ramp, then cosine decay to 10%
        if step < ramp:
            return (step + 1) / ramp
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - ramp) / max(1, steps - ramp)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    order: list[int] = []
    tail = max(1, steps // 10)
    tail_losses: list[float] = []
    report_every = max(1, steps // 10)
    start = time.perf_counter()
    for step in range(steps):
        while len(order) < BATCH_SIZE:  # a fresh shuffle per pass over the pairs
            order += torch.randperm(len(examples), generator=generator).tolist()
        batch, order = order[:BATCH_SIZE], order[BATCH_SIZE:]
        loss = model(**_collate([examples[i] for i in batch], tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= steps - tail:
            tail_losses.append(loss.item())
        if progress and ((step + 1) % report_every == 0 or step + 1 == steps):
            rate = (step + 1) / (time.perf_counter() - start)
            progress(f"tiny warm-up step {step + 1}/{steps} loss {loss.item():.4f} {rate:.2f} steps/s")
    model.eval()
    return sum(tail_losses) / len(tail_losses)


def ensure_tiny_model(
    cache_root: str | Path,
    corpus: Sequence[str],
    warmup: Sequence[tuple[str, str]],
    *,
    steps: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The directory of a tiny model built from these inputs, building it only if no finished copy exists.

    Args:
        cache_root: Directory holding cached builds (created if missing).
        corpus: Texts the tokenizer is trained on; should cover every word prompts and answers use.
        warmup: (prompt, completion) pairs for the supervised warm-up; the loss covers the completion
            and the EOS appended to it.
        steps: Warm-up optimiser steps (0 keeps the random initialisation).
        seed: Seeds the initialisation and the order of warm-up batches.
        progress: Called with a human-readable line every tenth of the warm-up.

    Returns:
        A directory that `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` load offline, with a
        `lineage.json` recording what it was built from.
    """
    import torch
    from transformers.utils import logging as hf_logging

    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    lineage = {
        "version": VERSION,
        "corpus_sha256": _sha256_json(list(corpus)),
        "warmup_sha256": _sha256_json([list(pair) for pair in warmup]),
        "steps": steps,
        "seed": seed,
    }
    final = root / f"tiny-{_sha256_json(lineage)[:16]}"
    if _is_complete(final):
        try:
            check_record(final)
            return final
        except DamagedModelError as error:
            if progress:
                progress(f"damaged tiny model, rebuilding it: {error}")
    if final.exists():  # damaged after the fact (a build only ever renames a finished dir here): redo it
        shutil.rmtree(final, ignore_errors=True)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        # fork_rng keeps the caller's global torch RNG untouched by the seeding below.
        with torch.random.fork_rng(devices=[]):
            tokenizer = build_tokenizer(corpus)
            model = build_model(tokenizer, seed)
            final_loss = warm_up(model, tokenizer, warmup, steps=steps, seed=seed, progress=progress)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a one-shard bar on stderr would precede a caller's one-line error
        try:
            model.save_pretrained(tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(tmp)
        lineage |= {
            "parameters": sum(p.numel() for p in model.parameters()),
            "architecture": {"hidden": HIDDEN, "layers": LAYERS, "heads": HEADS, "intermediate": INTERMEDIATE},
            "vocab_size": len(tokenizer),
            "warmup_pairs": len(warmup),
            "warmup_final_loss": None if math.isnan(final_loss) else round(final_loss, 6),
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2) + "\n")
        write_record(tmp)  # after every content file; the rename below keeps their mtimes
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final):  # not a concurrent builder that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
