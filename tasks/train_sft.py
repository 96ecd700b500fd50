"""Fine-tuning step: LoRA SFT (TRL `SFTTrainer` + PEFT) on the round's selected responses.

Each round continues from the previous promoted policy: when that policy carries an adapter, the
adapter is loaded trainable and trained further, so the saved adapter is always the whole delta
from the base model. The loss covers completion tokens only (TRL's prompt-completion format).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from peft import LoraConfig
from prefect import task
from prefect.cache_policies import NO_CACHE
from transformers import PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from configs.schema import CampaignConfig, TrainConfig
from models.loading import load_policy, set_torch_threads
from tasks.progress import emit
from tasks.records import DatasetRef, ModelRef, read_records, sha256_dir, write_lineage
from tasks.select import to_sft_examples
from tasks.tracking import RunContext


def lora_config(cfg: TrainConfig) -> LoraConfig:
    """The PEFT LoRA settings for a fresh adapter."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def sft_args(cfg: TrainConfig, output_dir: str, seed: int) -> SFTConfig:
    """TRL settings; bf16 and gradient checkpointing are TRL defaults that cost ~5x on CPU (shared NOTES)."""
    return SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        seed=seed,
        data_seed=seed,
        max_length=cfg.max_length,
        completion_only_loss=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


class _ProgressCallback(TrainerCallback):
    """Reports step, loss and steps/s through a plain callable (no tqdm bars in Prefect logs)."""

    def __init__(self, report: Callable[[str], None], every_seconds: float = 5.0) -> None:
        self.report = report
        self.every = every_seconds
        self.start = self.last = time.perf_counter()
        self.losses: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
        now = time.perf_counter()
        if now - self.last >= self.every or state.global_step == state.max_steps:
            self.last = now
            rate = state.global_step / max(now - self.start, 1e-9)
            loss = f"{self.losses[-1]:.4f}" if self.losses else "n/a"
            self.report(f"train: step {state.global_step}/{state.max_steps}, loss {loss}, {rate:.2f} steps/s")


def train_sft(
    base: str,
    adapter: str | None,
    examples: Sequence[dict[str, str]],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train a LoRA adapter on prompt/completion examples and save it to `out_dir`.

    Args:
        base: base model directory or hub id.
        adapter: the starting policy's adapter directory, or None to start a fresh adapter.
        examples: `{"prompt", "completion"}` dicts (TRL prompt-completion format).
        cfg: training settings.
        out_dir: where the adapter is written (replaced whole, never left half-written).
        seed: seeds data order, dropout and initialisation.
        progress: receives one-line progress reports.

    Returns:
        Metrics: `loss` (mean over logged steps), `final_loss`, `steps`, `examples`, `seconds`.
    """
    model, tokenizer = load_policy(base, adapter, trainable=True)
    callback = _ProgressCallback(progress or (lambda _line: None))
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        trainer = SFTTrainer(
            model=model,
            args=sft_args(cfg, str(scratch / "trainer"), seed),
            train_dataset=Dataset.from_list(list(examples)),
            processing_class=tokenizer,
            peft_config=None if adapter else lora_config(cfg),
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # added when tqdm is off; it prints raw log dicts
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trainer.model.save_pretrained(str(scratch / "adapter"))
        if out.exists():
            shutil.rmtree(out)
        (scratch / "adapter").rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses = callback.losses or [float("nan")]
    return {
        "loss": sum(losses) / len(losses),
        "final_loss": losses[-1],
        "steps": float(trainer.state.global_step),
        "examples": float(len(examples)),
        "seconds": seconds,
    }


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    config: CampaignConfig, policy: ModelRef, selected: DatasetRef, out_dir: str, ctx: RunContext
) -> ModelRef | None:
    """Train on the selected rows; return the new policy, or None when too few rows survived."""
    examples = to_sft_examples(read_records(selected), config.prompts.template)
    if len(examples) < config.train.min_examples:
        emit(f"train: skipped, {len(examples)} examples < train.min_examples={config.train.min_examples}")
        ctx.log_metrics({"train/skipped": 1.0, "train/examples": float(len(examples))})
        return None
    set_torch_threads(config.model.torch_threads)
    seed = config.seed * 1000 + ctx.step
    metrics = train_sft(policy.base, policy.adapter, examples, config.train, out_dir, seed=seed, progress=emit)
    write_lineage(Path(out_dir), parent=policy, data=selected, train=config.train, seed=seed)
    ctx.log_metrics({"train/skipped": 0.0, **{f"train/{k}": v for k, v in metrics.items()}})
    ctx.log_artifact(out_dir, "adapter")
    return ModelRef(
        source=policy.source,
        base=policy.base,
        adapter=str(Path(out_dir).resolve()),
        sha256=sha256_dir(out_dir),
    )
