"""Settings every selftrain trainer shares: the LoRA adapter, the CPU trainer options, and atomic adapter saving.

The SFT, DPO, SuperHF and reward-model trainers import these instead of borrowing from one another, as
torchtune's recipes import their shared components.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peft import LoraConfig

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
