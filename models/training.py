"""What every selftrain trainer shares: the LoRA adapter settings, the CPU trainer options, train-then-replace,
weight averaging.

The SFT, DPO, SuperHF and reward-model trainers import these instead of borrowing from one another, as
torchtune's recipes import their shared components.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import TrainerCallback

from configs.schema import TrainConfig


def lora_config(cfg: TrainConfig) -> LoraConfig:
    """The PEFT LoRA settings for a fresh adapter."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def cpu_trainer_settings(seed: int) -> dict[str, Any]:
    """Trainer settings every selftrain trainer (SFT, DPO, reward model) shares.

    bf16 and gradient checkpointing are TRL defaults that cost ~5x on this CPU (shared NOTES); no DataLoader
    workers, since flows must not fork; no checkpoints, tqdm or external loggers: selftrain saves and logs itself.
    """
    return {
        "lr_scheduler_type": "linear",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


class StepProgress(TrainerCallback):
    """Base of the trainers' progress callbacks: a line through a plain callable (no tqdm bars in Prefect logs)
    every `every_seconds` and at the last step, never two for one step (the last step logs twice: its values,
    then the run's summary)."""

    def __init__(self, report: Callable[[str], None], every_seconds: float = 5.0) -> None:
        self.report = report
        self.every = every_seconds
        self.start = self.last = time.perf_counter()
        self.reported = -1

    def rate_if_due(self, state: Any) -> float | None:
        """Steps per second so far when a line is due now (and counted as given), else None."""
        now = time.perf_counter()
        due = now - self.last >= self.every or state.global_step == state.max_steps
        if not due or state.global_step == self.reported:
            return None
        self.last, self.reported = now, state.global_step
        return state.global_step / max(now - self.start, 1e-9)


class WeightAverage(TrainerCallback):
    """Stochastic weight averaging of the trainable weights (Izmailov et al. 2018), dense as in SWAD (Cha et
    al. 2021): the uniform mean of the weights after every optimiser step from `start_share` of training on,
    copied into the model when training ends, so what is saved is the average, not the last step.

    Attributes:
        averaged_steps: How many steps' weights the average holds (0 before training ends).
    """

    def __init__(self, start_share: float) -> None:
        self.start_share = start_share
        self.averaged_steps = 0
        self._mean: dict[str, torch.Tensor] = {}
        self._start = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._start = int(state.max_steps * self.start_share)
        self._mean, self.averaged_steps = {}, 0

    def on_step_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **_: Any) -> None:
        if model is None or state.global_step <= self._start:
            return
        self.averaged_steps += 1
        with torch.no_grad():
            for name, param in model.named_parameters():
                if not param.requires_grad:
                    continue
                if name not in self._mean:
                    self._mean[name] = param.detach().clone()
                else:
                    self._mean[name].add_(param.detach() - self._mean[name], alpha=1.0 / self.averaged_steps)

    def on_train_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **_: Any) -> None:
        if model is None or not self._mean:
            return
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self._mean:
                    param.copy_(self._mean[name])


@dataclass(frozen=True)
class Scratch:
    """Where a trainer works: `work` for the trainer's own files, `result` for what replaces the output folder."""

    work: Path
    result: Path


@contextmanager
def train_then_replace(out_dir: str | Path) -> Iterator[Scratch]:
    """A scratch folder beside `out_dir`; when the block ends without error, its `result` replaces `out_dir` whole.

    The scratch folder sits in the same parent (so the final move is a rename on one file system) under a hidden
    name, and is removed however the block ends: a crash or an interrupt leaves `out_dir` as it was, never
    half-written. A process killed outright (SIGKILL) cannot remove its scratch folder; the next training into
    `out_dir` does (the campaign's folder lock means no other process trains there).

    Args:
        out_dir: The folder the finished result becomes (its parents are created).

    Yields:
        The scratch paths; the block must write the finished result into `Scratch.result`.

    Raises:
        FileNotFoundError: when the block ended without writing `Scratch.result`.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*"):  # a killed process's scratch folder
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        paths = Scratch(work=scratch / "work", result=scratch / "result")
        yield paths
        if not paths.result.exists():
            raise FileNotFoundError(f"{out}: the trainer wrote no result into its scratch folder {paths.result}")
        if out.exists():
            shutil.rmtree(out)
        paths.result.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
