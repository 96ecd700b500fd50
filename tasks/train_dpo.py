"""Fine-tuning step: LoRA DPO (TRL `DPOTrainer` + PEFT) on preference pairs built from the round's judged samples.

Iterative DPO (Xu et al. 2023; Pang et al. 2024): every round, each prompt's best sample is preferred over
its worst, and the policy is pushed away from a reference by DPO's loss (Rafailov et al. 2023). The
reference is either the round's starting policy (TRL copies a pretrained adapter into a frozen "ref"
adapter; with no adapter yet, the base with adapters disabled is that policy) or the campaign's fixed
base model. As in `tasks.train_sft`, the adapter is continued, so the saved adapter is always the whole
delta from the base model and every other step loads it the same way. Duplicated from train_sft where
the two trainers share habits (TRL's rule: duplication is fine, inconsistency is not).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from datasets import Dataset
from datasets.utils.logging import disable_progress_bar
from peft import PeftModel
from prefect import task
from transformers import PrinterCallback
from trl import DPOConfig, DPOTrainer

from configs.schema import CampaignConfig, TrainConfig
from models.loading import load_policy, set_torch_threads
from models.training import StepProgress, cpu_trainer_settings, lora_config, train_then_replace
from tasks.adapter_record import record_adapter
from tasks.layout import RESUMABLE
from tasks.progress import emit
from tasks.records import DatasetRef, ModelRef, Record, read_records
from tasks.tracking import RoundContext


def preference_pairs(rows: Sequence[Record], rule: str) -> list[Record]:
    """One (chosen, rejected) pair per prompt from its judged samples.

    Args:
        rows: Judged records (`id`, `prompt`, `sample`, `response`, `score`, and `correct` for rule "correct").
        rule: "score": the highest- vs the lowest-scoring sample (ties: the earliest sample for chosen, the
            latest for rejected), skipped when the two scores are equal; "correct": the earliest verified-correct
            vs the earliest wrong sample, skipped unless the prompt has both.

    Returns:
        `{"id", "prompt", "chosen", "rejected", "chosen_score", "rejected_score"}` per prompt with a pair, in
        first-seen prompt order. Pairs whose two responses are the same text are skipped.

    Raises:
        ValueError: for an unknown rule.
    """
    if rule not in ("score", "correct"):
        raise ValueError(f"unknown pair rule {rule!r}; expected 'score' or 'correct'")
    by_prompt: dict[str, list[Record]] = {}
    for row in rows:
        if row.get("source") != "gold":
            by_prompt.setdefault(row["id"], []).append(row)
    pairs = []
    for candidates in by_prompt.values():
        ordered = sorted(candidates, key=lambda row: row.get("sample", 0))
        if rule == "score":
            chosen = max(ordered, key=lambda row: row["score"])  # max/min return the first of equals
            rejected = min(reversed(ordered), key=lambda row: row["score"])
            if chosen["score"] <= rejected["score"]:
                continue
        else:
            good = [row for row in ordered if row.get("correct") is True]
            bad = [row for row in ordered if row.get("correct") is False]
            if not good or not bad:
                continue
            chosen, rejected = good[0], bad[0]
        if chosen["response"].strip() == rejected["response"].strip():
            continue
        pairs.append(_pair(chosen, rejected))
    return pairs


def gold_pairs(gold: Sequence[Record], judged: Sequence[Record]) -> list[Record]:
    """Pairs that prefer a real (gold) answer over the prompt's lowest-scoring sample, when that one scored lower.

    This is how `select.gold_share` reaches DPO: real data stays in every round's preference set.
    """
    worst: dict[str, Record] = {}
    for row in sorted(judged, key=lambda row: row.get("sample", 0)):
        if row["id"] not in worst or row["score"] < worst[row["id"]]["score"]:
            worst[row["id"]] = row
    return [
        _pair(row, worst[row["id"]])
        for row in gold
        if row["id"] in worst
        and worst[row["id"]]["score"] < row["score"]
        and worst[row["id"]]["response"].strip() != row["response"].strip()
    ]


def _pair(chosen: Record, rejected: Record) -> Record:
    return {
        "id": chosen["id"],
        "prompt": chosen["prompt"],
        "chosen": chosen["response"],
        "rejected": rejected["response"],
        "chosen_score": chosen["score"],
        "rejected_score": rejected["score"],
    }


def to_dpo_examples(pairs: Sequence[Record], template: str) -> list[dict[str, str]]:
    """Pairs as TRL preference examples `{"prompt", "chosen", "rejected"}`, the prompt rendered as sampled."""
    return [
        {"prompt": template.format(prompt=p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs
    ]


def dpo_args(cfg: TrainConfig, output_dir: str, seed: int) -> DPOConfig:
    """TRL settings for DPO with LoRA (plus the SFT term on the chosen answer when `dpo_sft_weight` > 0)."""
    return DPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        beta=cfg.dpo_beta,
        loss_type=["sigmoid", "sft"] if cfg.dpo_sft_weight > 0 else ["sigmoid"],
        loss_weights=[1.0, cfg.dpo_sft_weight] if cfg.dpo_sft_weight > 0 else None,
        max_length=cfg.max_length,
        **cpu_trainer_settings(seed),
    )


class _LogCallback(StepProgress):
    """Keeps TRL's logged values and reports step, loss and reward margin."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__(report)
        self.logs: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self.logs.append({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})
        rate = self.rate_if_due(state) if self.logs else None
        if rate is not None:
            last = self.logs[-1]
            self.report(
                f"train(dpo): step {state.global_step}/{state.max_steps}, loss {last['loss']:.4f}, "
                f"margin {last.get('rewards/margins', float('nan')):.3f}, {rate:.2f} steps/s"
            )


def train_dpo(
    base: str,
    adapter: str | None,
    examples: Sequence[dict[str, str]],
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train a LoRA adapter with DPO on preference examples and save it to `out_dir`.

    Args:
        base: Base model directory or hub id.
        adapter: The starting policy's adapter directory, or None to start a fresh adapter.
        examples: `{"prompt", "chosen", "rejected"}` dicts.
        cfg: Training settings (`dpo_beta`, `dpo_reference`, LoRA and optimiser fields).
        out_dir: Where the adapter is written (replaced whole, never left half-written).
        seed: Seeds data order, dropout and initialisation.
        progress: Receives one-line progress reports.

    Returns:
        Metrics: `loss` (mean over steps), `final_loss`, `margin` and `reward_accuracy` (mean over steps of
        TRL's `rewards/margins` and `rewards/accuracies`), `steps`, `pairs`, `seconds`.
    """
    disable_progress_bar()  # TRL's dataset preparation bars would flood the Prefect logs
    model, tokenizer = load_policy(base, adapter, trainable=True)
    ref_model = None
    if adapter is not None and cfg.dpo_reference == "base":
        # TRL would copy the pretrained adapter as the reference; the fixed base needs its own frozen model.
        ref_model, _ = load_policy(base)  # float32, eval mode, no adapter
    callback = _LogCallback(progress or (lambda _line: None))
    with train_then_replace(out_dir) as scratch:
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model,
            args=dpo_args(cfg, str(scratch.work), seed),
            train_dataset=Dataset.from_list(list(examples)),
            processing_class=tokenizer,
            peft_config=None if adapter else lora_config(cfg),
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # added when tqdm is off; it prints raw log dicts
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        # Only the trained adapter: TRL's frozen "ref" copy (when continuing an adapter) is not part of the policy.
        cast(PeftModel, trainer.model).save_pretrained(str(scratch.result), selected_adapters=["default"])
    logs = callback.logs or [{"loss": float("nan")}]

    def mean(key: str) -> float:
        values = [entry[key] for entry in logs if key in entry]
        return sum(values) / len(values) if values else float("nan")

    return {
        "loss": mean("loss"),
        "final_loss": logs[-1]["loss"],
        "margin": mean("rewards/margins"),
        "reward_accuracy": mean("rewards/accuracies"),
        "steps": float(trainer.state.global_step),
        "pairs": float(len(examples)),
        "seconds": seconds,
    }


@task(name="train", **RESUMABLE)
def dpo_train_task(
    config: CampaignConfig,
    policy: ModelRef,
    judged: DatasetRef,
    selected: DatasetRef,
    out_dir: str,
    ctx: RoundContext,
) -> ModelRef | None:
    """DPO on pairs from all judged samples (plus gold-vs-worst pairs from the selected file's gold rows);
    return the new policy, or None when too few pairs exist."""
    judged_rows = read_records(judged)
    gold = [row for row in read_records(selected) if row.get("source") == "gold"]
    pairs = preference_pairs(judged_rows, config.train.dpo_pairs) + gold_pairs(gold, judged_rows)
    if len(pairs) < config.train.min_examples:
        emit(f"train(dpo): skipped, {len(pairs)} pairs < train.min_examples={config.train.min_examples}")
        ctx.log_metrics({"train/skipped": 1.0, "train/pairs": float(len(pairs))})
        return None
    set_torch_threads(config.model.torch_threads)
    seed = ctx.seed
    examples = to_dpo_examples(pairs, config.prompts.template)
    metrics = train_dpo(policy.base, policy.adapter, examples, config.train, out_dir, seed=seed, progress=emit)
    return record_adapter(config, policy, out_dir, ctx, metrics, seed=seed, data=judged, selected=selected)
