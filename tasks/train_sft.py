"""Fine-tuning step: LoRA SFT (TRL `SFTTrainer` + PEFT) on the round's selected responses.

Each round continues from the previous promoted policy: when that policy carries an adapter, the
adapter is loaded trainable and trained further, so the saved adapter is always the whole delta
from the base model. The loss covers completion tokens only (TRL's prompt-completion format), and
only the positions that predict a completion token go through the LM head (`models.losses.completion_loss`): with
Gemma's 262k-token vocabulary the head is most of a step's cost, and the prompt positions are most of
each example. With `prompts.chat` the examples are TRL's conversational prompt-completion rows (a user turn,
an assistant turn): TRL renders them with the tokenizer's chat template and the loss still covers the
assistant's reply only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset
from peft import PeftModel
from prefect import task
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from configs.schema import TRAIN_DTYPE_METRICS, CampaignConfig, TrainConfig
from models.loading import DTYPES, load_policy, resolve_train_dtype, set_torch_threads
from models.losses import completion_loss
from models.training import StepProgress, WeightAverage, cpu_trainer_settings, lora_config, train_then_replace
from tasks.adapter_record import record_adapter
from tasks.layout import RESUMABLE
from tasks.progress import emit
from tasks.prompts import chat_example
from tasks.records import DatasetRef, ModelRef, read_records
from tasks.select import to_sft_examples
from tasks.tracking import RoundContext


def sft_args(cfg: TrainConfig, output_dir: str, seed: int) -> SFTConfig:
    """TRL settings for LoRA SFT with the loss on completion tokens."""
    return SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        completion_only_loss=True,
        neftune_noise_alpha=cfg.neftune_alpha,
        **cpu_trainer_settings(seed),
    )


class CompletionLogitsSFTTrainer(SFTTrainer):
    """TRL's `SFTTrainer` with `completion_loss` as its training loss; everything else (data, collator,
    optimiser, schedule, logging of `entropy`, `mean_token_accuracy` and `num_tokens`) is TRL's.

    Attributes:
        head_dtype: The dtype of the head's products in the loss (`train.head_dtype`, resolved).
    """

    head_dtype: torch.dtype = torch.float32

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The loss of one batch; with `return_outputs` (evaluation asking for logits) TRL's own path."""
        if return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        unwrapped = self.accelerator.unwrap_model(model)
        loss, stats = completion_loss(unwrapped, inputs, num_items_in_batch, head_dtype=self.head_dtype)
        # As TRL: with num_items_in_batch counted over every process, DDP's gradient averaging is undone.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        mode = "train" if cast(torch.nn.Module, self.model).training else "eval"
        self._metrics[mode]["entropy"].append(stats["entropy"])
        self._metrics[mode]["mean_token_accuracy"].append(stats["accuracy"])
        if mode == "train" and "attention_mask" in inputs:
            self._total_train_tokens += int(inputs["attention_mask"].sum()) // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


def make_trainer(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Mapping[str, Any]],
    cfg: TrainConfig,
    output_dir: str,
    *,
    seed: int,
    fresh_adapter: bool,
    completion_logits_only: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    """The trainer `train_sft` runs (also used by the benchmarks to time one step).

    Args:
        model: The policy, with a trainable adapter already when `fresh_adapter` is False.
        tokenizer: Its tokenizer.
        examples: `{"prompt", "completion"}` dicts: text, or chat turns (`tasks.prompts.chat_example`).
        cfg: Training settings.
        output_dir: The trainer's scratch folder.
        seed: Seeds data order, dropout and initialisation.
        fresh_adapter: Wrap the model in a new LoRA adapter (`lora_config(cfg)`).
        completion_logits_only: Use `completion_loss` (the same loss, logits only at completion tokens);
            False keeps TRL's loss, which projects every position through the LM head.
        callbacks: Trainer callbacks.
    """
    trainer_class = CompletionLogitsSFTTrainer if completion_logits_only else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=sft_args(cfg, output_dir, seed),
        train_dataset=Dataset.from_list(list(examples)),
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if fresh_adapter else None,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # added when tqdm is off; it prints raw log dicts
    if isinstance(trainer, CompletionLogitsSFTTrainer):
        trainer.head_dtype = DTYPES[resolve_train_dtype(cfg.head_dtype)]
    return trainer


class _ProgressCallback(StepProgress):
    """Reports step, loss and steps/s."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__(report)
        self.losses: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
        rate = self.rate_if_due(state)
        if rate is not None:
            loss = f"{self.losses[-1]:.4f}" if self.losses else "n/a"
            self.report(f"train: step {state.global_step}/{state.max_steps}, loss {loss}, {rate:.2f} steps/s")


def train_sft(
    base: str,
    adapter: str | None,
    examples: Sequence[Mapping[str, Any]],
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
        examples: `{"prompt", "completion"}` dicts (TRL prompt-completion format, text or conversational).
        cfg: training settings.
        out_dir: where the adapter is written (replaced whole, never left half-written).
        seed: seeds data order, dropout and initialisation.
        progress: receives one-line progress reports.

    Returns:
        Metrics: `loss` (mean over logged steps), `final_loss`, `steps`, `examples`, `seconds`, and with
        `cfg.average_from` `averaged_steps` (the steps whose weights the saved adapter averages).
    """
    model, tokenizer = load_policy(base, adapter, trainable=True, dtype=DTYPES[resolve_train_dtype(cfg.base_dtype)])
    check_rows_fit(tokenizer, examples, cfg.max_length)
    callback = _ProgressCallback(progress or (lambda _line: None))
    average = WeightAverage(cfg.average_from) if cfg.average_from is not None else None
    with train_then_replace(out_dir) as scratch:
        trainer = make_trainer(
            model,
            tokenizer,
            examples,
            cfg,
            str(scratch.work),
            seed=seed,
            fresh_adapter=adapter is None,
            callbacks=[callback, *([average] if average else [])],
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        cast(PeftModel, trainer.model).save_pretrained(str(scratch.result))
    losses = callback.losses or [float("nan")]
    return {
        "loss": sum(losses) / len(losses),
        "final_loss": losses[-1],
        "steps": float(trainer.state.global_step),
        "examples": float(len(examples)),
        "seconds": seconds,
        **({"averaged_steps": float(average.averaged_steps)} if average else {}),
    }


def check_rows_fit(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Mapping[str, Any]], max_length: int) -> None:
    """Raise when no text example keeps a completion token within `max_length` (TRL would drop every row and fail
    on an empty dataset, naming no setting). Chat examples are rendered by TRL and left to it."""
    prompts = [example["prompt"] for example in examples if isinstance(example["prompt"], str)]
    if not prompts or len(prompts) < len(examples):
        return
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    if min(lengths) >= max_length:
        raise ValueError(
            f"train.max_length={max_length}: each of {len(prompts)} training rows' prompts is that long or longer "
            f"(the shortest {min(lengths)} tokens), so no completion token is left to train on; raise train.max_length"
        )


@task(name="train", **RESUMABLE)
def sft_train_task(
    config: CampaignConfig, policy: ModelRef, selected: DatasetRef, out_dir: str, ctx: RoundContext
) -> ModelRef | None:
    """Train on the selected rows; return the new policy, or None when too few rows survived."""
    examples: list[Mapping[str, Any]] = list(to_sft_examples(read_records(selected), config.prompts.template))
    if config.prompts.chat:
        examples = [chat_example(example["prompt"], example["completion"]) for example in examples]
    if len(examples) < config.train.min_examples:
        emit(f"train: skipped, {len(examples)} examples < train.min_examples={config.train.min_examples}")
        ctx.log_metrics({"train/skipped": 1.0, "train/examples": float(len(examples))})
        return None
    set_torch_threads(config.model.torch_threads)
    seed = ctx.seed
    emit(f"train: starting on {len(examples)} examples")
    train = config.train_for_round(ctx.round)  # the warm start may take its own epochs
    dtypes = {field: resolve_train_dtype(getattr(train, field)) for field in TRAIN_DTYPE_METRICS}
    train = train.model_copy(update=dtypes)  # auto: by this CPU
    metrics = train_sft(policy.base, policy.adapter, examples, train, out_dir, seed=seed, progress=emit)
    metrics |= {metric: float(dtypes[field] == "bfloat16") for field, metric in TRAIN_DTYPE_METRICS.items()}
    return record_adapter(config, policy, out_dir, ctx, metrics, seed=seed, train=train, data=selected)
