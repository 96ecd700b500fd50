"""Measure one SFT step: selftrain's trainer step vs a bare PyTorch step on the same batch and LoRA model.

For each model (the tiny Llama, Gemma 3 270M), with LoRA r=16 on all linear layers, one batch of bare
questions with short worked answers (~40 tokens each, the format selftrain trains on) is timed as:

- `ours`: the trainer `tasks.train_sft.make_trainer` builds (TRL `SFTTrainer` with `completion_loss`:
  logits only at completion tokens), timed between consecutive step-end callbacks of `Trainer.train`:
  fetching and collating the batch, forward, backward, AdamW, schedule, TRL's per-step logging (and,
  here, an epoch boundary per step);
- `trl_full_logits`: the same trainer with TRL's own loss (`completion_logits_only=False`), whose fused
  LM head scores every position on a CPU;
- `bare`: a hand-written step on the trainer's collated batch: forward through the same kind of LoRA
  model, cross-entropy on completion tokens (logits only there, as `ours`), backward, `torch.optim.AdamW`
  step; and `bare_full_logits`: the same with the model's ordinary forward (logits at every position).

The dataset is the batch itself, one epoch per step, so every step sees the same examples. The first step
(allocations, lazy initialisation) is dropped; the median of the others is reported, in wall and in CPU
seconds of this process. Ratios are taken on CPU time (with one torch thread it is the step's own work,
however busy the shared machine is), within this one run. Goal: ours / bare <= 1.5.

Prints a table and writes `benchmarks/results/sft_step.json` (with the git commit).

Run: `.venv/bin/python benchmarks/sft_step.py [--models tiny,gemma] [--steps 4] [--batch-size 8]`
(tiny a few seconds; Gemma a few minutes on 2 shared cores).
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import TrainerCallback

from configs.loader import load_config
from configs.schema import TrainConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.losses import completion_loss
from models.training import lora_config
from tasks.arithmetic import sample_problems
from tasks.base_model import cache_root, prepare_base
from tasks.tracking import git_commit
from tasks.train_sft import make_trainer

RESULTS = ROOT / "benchmarks" / "results" / "sft_step.json"
TEMPLATE = "Question: {prompt}\nAnswer:"


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class _StepTimer(TrainerCallback):
    """Wall and CPU seconds of each optimiser step: the first from its `on_step_begin`, the others from
    the previous step's end, so fetching and collating the batch, logging and epoch bookkeeping count."""

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []
        self.last: tuple[float, float] | None = None

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        if self.last is None:
            self.last = _clocks()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        now = _clocks()
        self.seconds.append((now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now


def _base_path(name: str) -> str:
    if name == "tiny":
        return prepare_base(load_config("tiny")).base
    return str(ensure_packaged_gemma(cache_root() / "models"))


def _examples(n: int) -> list[dict[str, str]]:
    """Bare questions with their worked answers (operands 1..20), as selftrain trains on them."""
    problems = sample_problems(n, split="train", seed=3, min_operand=1, max_operand=20, operations=["add", "sub"])
    return [{"prompt": TEMPLATE.format(prompt=p["prompt"]), "completion": p["solution"]} for p in problems]


def _cfg(batch_size: int, steps: int) -> TrainConfig:
    return TrainConfig(
        lora_r=16, lora_alpha=32, target_modules="all-linear", batch_size=batch_size, epochs=steps, learning_rate=5e-4
    )


def time_trainer(
    base: str, examples: list[dict[str, str]], cfg: TrainConfig, completion_only: bool
) -> list[tuple[float, float]]:
    """Per-step (wall, CPU) seconds of `Trainer.train` on the trainer selftrain builds."""
    model, tokenizer = load_policy(base)
    timer = _StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(
            model,
            tokenizer,
            examples,
            cfg,
            scratch,
            seed=0,
            fresh_adapter=True,
            completion_logits_only=completion_only,
            callbacks=[timer],
        )
        trainer.train()
    return timer.seconds


def collated_batch(base: str, examples: list[dict[str, str]], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The batch the trainer feeds its first step (tokenised and collated by TRL)."""
    model, tokenizer = load_policy(base)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(model, tokenizer, examples, cfg, scratch, seed=0, fresh_adapter=True)
        return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def time_bare(
    base: str, batch: dict[str, torch.Tensor], cfg: TrainConfig, steps: int, full: bool
) -> list[tuple[float, float]]:
    """Per-step (wall, CPU) seconds of a hand-written LoRA step: forward, completion-token loss, backward, AdamW."""
    model, _ = load_policy(base)
    model = get_peft_model(model, lora_config(cfg))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    seconds = []
    for _ in range(steps):
        started = _clocks()
        if full:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
        else:
            loss, _ = completion_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        now = _clocks()
        seconds.append((now[0] - started[0], now[1] - started[1]))
    return seconds


def bench_model(name: str, batch_size: int, steps: int) -> dict[str, Any]:
    """All four step timings for one model; the first step of each is dropped."""
    base = _base_path(name)
    examples = _examples(batch_size)
    cfg = _cfg(batch_size, steps + 1)
    batch = collated_batch(base, examples, cfg)
    runs = {
        "ours": time_trainer(base, examples, cfg, completion_only=True),
        "trl_full_logits": time_trainer(base, examples, cfg, completion_only=False),
        "bare": time_bare(base, batch, cfg, steps + 1, full=False),
        "bare_full_logits": time_bare(base, batch, cfg, steps + 1, full=True),
    }
    # Ratios on CPU time: with one torch thread it is the step's own work, whatever else the shared machine runs.
    median = {key: statistics.median(cpu for _, cpu in secs[1:]) for key, secs in runs.items()}
    median_wall = {key: statistics.median(wall for wall, _ in secs[1:]) for key, secs in runs.items()}
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    return {
        "batch_size": batch_size,
        "tokens_per_row": batch["input_ids"].shape[1],
        "completion_tokens": labelled,
        "real_tokens": int(batch["attention_mask"].sum()),
        "steps_timed": steps,
        "seconds_wall_cpu": runs,
        "median_cpu_seconds": median,
        "median_wall_seconds": median_wall,
        "ours_over_bare": median["ours"] / median["bare"],
        "ours_over_bare_full_logits": median["ours"] / median["bare_full_logits"],
        "trl_full_logits_over_ours": median["trl_full_logits"] / median["ours"],
        "bare_full_logits_over_bare": median["bare_full_logits"] / median["bare"],
        "ours_over_bare_wall": median_wall["ours"] / median_wall["bare"],
        "trl_full_logits_over_ours_wall": median_wall["trl_full_logits"] / median_wall["ours"],
        "goal": "ours_over_bare <= 1.5",
    }


def main() -> int:
    """Benchmark the chosen models, print a table, merge the figures into the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,gemma", help="comma-separated: tiny, gemma")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (one more is run first)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results |= {
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
    }
    for name in ns.models.split(","):
        results[name] = bench_model(name, ns.batch_size, ns.steps)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"commit {results['commit']}, {results['date']}, {results['torch_threads']} torch thread(s)")
    for name in ("tiny", "gemma"):
        if name not in results:
            continue
        r = results[name]
        print(f"\n{name}: batch {r['batch_size']} x {r['tokens_per_row']} tokens, {r['completion_tokens']} completion")
        for key, value in r["median_cpu_seconds"].items():
            print(f"  {key:18s} {value:8.3f} s/step CPU  {r['median_wall_seconds'][key]:8.3f} s/step wall")
        print("  ratios on CPU time:")
        print(
            f"  ours / bare               {r['ours_over_bare']:.2f}  (goal <= 1.5; wall {r['ours_over_bare_wall']:.2f})"
        )
        print(f"  ours / bare full logits   {r['ours_over_bare_full_logits']:.2f}")
        print(f"  TRL full logits / ours    {r['trl_full_logits_over_ours']:.2f}")
        print(f"  bare full / bare          {r['bare_full_logits_over_bare']:.2f}")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
