"""Measure one SuperHF step on Gemma: the LM head at every position (the trainer until this benchmark) or only at
the completion positions (`models.losses.completion_logits`, the trainer now), against a plain SFT step.

SuperHF's loss (`models.losses.kl_sft_loss`) adds the KL to a reference over the whole vocabulary at every
completion position, so a step runs the reference too. Three arms, on one batch of 8 of the default campaign's
gold rows (its template, the digit working) with a fresh LoRA on Gemma 3 270M (`train.*` defaults of
`configs/default.yaml`: r=16, all linear layers), each a full optimiser step (forward, backward, AdamW):

- `superhf_all_positions`: policy and reference (the policy with its adapter disabled, as with `train.init: base`)
  through their ordinary forward, logits at every position, then the loss on the completion rows;
- `superhf`: `tasks.train_superhf.superhf_loss`, the trainer's: both through `completion_logits`, the head only
  where a loss is taken;
- `sft`: `models.losses.completion_loss` alone (the SFT trainer's loss, no reference), the floor.

Each repeat times the three arms in turn; the median over repeats after a warm-up, in CPU seconds of this process
with `--threads` torch threads. The ratios are within this one run. Appends to
`benchmarks/results/superhf_step.jsonl` with the git commit.

Run: `.venv/bin/python benchmarks/superhf_step.py [--repeats 3] [--threads 2]` (a few minutes).
"""

# ruff: noqa: E402  (the project root goes on sys.path before its modules are imported)

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
from peft import PeftModel, get_peft_model

from benchmarks._results import append_line
from benchmarks._timing import interleaved_cpu_medians
from configs.loader import load_config
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.losses import IGNORE, completion_loss, kl_sft_loss
from models.training import lora_config
from tasks.base_model import cache_root
from tasks.prompts import gold_prompts
from tasks.select import gold_rows, to_sft_examples
from tasks.tracking import git_commit
from tasks.train_superhf import collate, encode_examples, superhf_loss

RESULTS = ROOT / "benchmarks" / "results" / "superhf_step.jsonl"


def arms(model: PeftModel, inputs: dict[str, torch.Tensor], kl_weight: float) -> dict[str, Callable[[], None]]:
    """The three steps on one batch, each ending in an optimiser step on the LoRA weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=1e-6)  # tiny: the weights barely move between repeats
    ids, mask = inputs["input_ids"], inputs["attention_mask"]

    def step(loss: torch.Tensor) -> None:
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def superhf_all_positions() -> None:
        with torch.no_grad(), model.disable_adapter():
            ref = model(input_ids=ids, attention_mask=mask).logits
        logits = model(input_ids=ids, attention_mask=mask).logits
        step(kl_sft_loss(logits, ref, inputs["labels"], kl_weight)[0])

    def superhf() -> None:
        step(superhf_loss(model, None, inputs, kl_weight)[0])

    def sft() -> None:
        step(completion_loss(model, inputs)[0])

    return {"superhf_all_positions": superhf_all_positions, "superhf": superhf, "sft": sft}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_torch_threads(args.threads)
    config = load_config("default")
    torch.manual_seed(0)
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    loaded, tokenizer = load_policy(base, trainable=True)
    model = cast(PeftModel, get_peft_model(loaded, lora_config(config.train)))
    model.train()
    rows = gold_rows(gold_prompts(config, config.select.gold_examples), 8, seed=0)
    examples = to_sft_examples(rows, config.prompts.template)
    inputs = collate(encode_examples(tokenizer, examples, config.train.max_length), tokenizer.pad_token_id)
    completion_tokens = int((inputs["labels"][:, 1:] != IGNORE).sum())
    median = interleaved_cpu_medians(arms(model, inputs, config.train.kl_weight), args.repeats)
    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "date": datetime.date.today().isoformat(),
            "batch": list(inputs["input_ids"].shape),
            "completion_tokens": completion_tokens,
            "threads": args.threads,
            "repeats": args.repeats,
            "cpu_seconds_median": {name: round(value, 3) for name, value in median.items()},
            "superhf_over_all_positions": round(median["superhf"] / median["superhf_all_positions"], 3),
            "superhf_over_sft": round(median["superhf"] / median["sft"], 3),
            "all_positions_over_sft": round(median["superhf_all_positions"] / median["sft"], 3),
        },
    )


if __name__ == "__main__":
    main()
