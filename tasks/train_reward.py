"""Reward-model training: correct-vs-wrong pairs from labelled rows, fitted with TRL's RewardTrainer.

Pairs come from verifier-labelled rows (`correct`): for one prompt, a response judged correct is `chosen`
and one judged wrong is `rejected`. TRL's `RewardTrainer` fits a sequence-classification model (a
causal-LM checkpoint with a fresh one-output score head) to rank chosen above rejected. The reward-model
judge (`tasks.judging.reward_judge`) then scores a row by the sigmoid of that model's logit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback, set_seed
from trl import RewardConfig, RewardTrainer

from configs.schema import CampaignConfig, JudgeConfig
from models.reward_scorer import load_reward_model
from models.training import cpu_trainer_settings, train_then_replace
from tasks.judging.build import judge_model
from tasks.judging.reference_bank import bank_from_rounds, build_bank
from tasks.records import DatasetRef, ModelRef, Record, write_lineage


def correct_wrong_pairs(
    judged_rows: Sequence[Record], *, template: str = "{prompt}", per_prompt: int = 4, seed: int = 0
) -> list[dict[str, str]]:
    """Reward-model training pairs `{"prompt", "chosen", "rejected"}`: a correct and a wrong response to one prompt.

    Not the DPO trainer's pairs (`tasks.train_dpo.preference_pairs`, chosen and rejected by rule): here
    the labels come from the verifier.

    Per prompt (in order of first appearance), every distinct correct response is paired with every
    distinct wrong one; `per_prompt` of those pairs are drawn with a seeded generator. Rows without
    `correct` and prompts with only correct or only wrong responses give no pairs.

    Args:
        judged_rows: Records with `prompt`, `response` and (where labelled) `correct`.
        template: Formats the prompt text the reward model reads (`{prompt}` is the row's prompt).
        per_prompt: Most pairs per prompt.
        seed: Seed of the draw.
    """
    by_prompt: dict[str, tuple[list[str], list[str]]] = {}
    for row in judged_rows:
        if "correct" not in row:
            continue
        right, wrong = by_prompt.setdefault(row["prompt"], ([], []))
        side = right if row["correct"] else wrong
        if row["response"] not in side:
            side.append(row["response"])
    rng = random.Random(seed)
    pairs = []
    for prompt, (right, wrong) in by_prompt.items():
        candidates = [(c, r) for c in right for r in wrong]
        for chosen, rejected in rng.sample(candidates, min(per_prompt, len(candidates))):
            pairs.append({"prompt": template.format(prompt=prompt), "chosen": chosen, "rejected": rejected})
    return pairs


def reward_args(cfg: JudgeConfig, output_dir: str, seed: int) -> RewardConfig:
    """TRL settings for CPU training: no bf16, no gradient checkpointing (TRL defaults cost ~5x on CPU)."""
    return RewardConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.reward_batch_size,
        num_train_epochs=cfg.reward_epochs,
        learning_rate=cfg.reward_learning_rate,
        max_length=cfg.reward_max_length,
        **cpu_trainer_settings(seed),
    )


class _LogCallback(TrainerCallback):
    """Keeps the trainer's logged loss and pair accuracy, and reports progress through a callable."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.losses: list[float] = []
        self.accuracies: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            if "accuracy" in logs:
                self.accuracies.append(float(logs["accuracy"]))
            self.report(f"reward-model: step {state.global_step}/{state.max_steps}, loss {self.losses[-1]:.4f}")


def train_reward_model(
    pairs: Sequence[dict[str, str]],
    base_dir: str,
    out_dir: str | Path,
    cfg: JudgeConfig,
    *,
    seed: int = 0,
    lineage: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train a reward model on preference pairs with TRL's `RewardTrainer` and save it to `out_dir`.

    Args:
        pairs: `{"prompt", "chosen", "rejected"}` dicts (`correct_wrong_pairs`).
        base_dir: A causal-LM or sequence-classification checkpoint (directory or hub id); a causal LM
            gets a fresh score head (transformers warns that its weights are newly initialised).
        out_dir: Where the model and tokenizer go, with `lineage.json`; replaced whole, never half-written.
        cfg: The judge config (`reward_*` training settings).
        seed: Seeds the score head, data order and dropout.
        lineage: Extra facts for `lineage.json` (base, pairs, config and seed are always recorded).
        progress: Receives one-line progress reports.

    Returns:
        Metrics: `loss` (mean over logged steps), `final_loss`, `accuracy` (last logged pair accuracy),
        `steps`, `pairs`, `seconds`.

    Raises:
        ValueError: when there are no pairs to train on.
    """
    if not pairs:
        raise ValueError("no preference pairs to train a reward model on (need a prompt with both labels)")
    set_seed(seed)  # the score head is initialised at load time
    model, tokenizer = load_reward_model(base_dir)
    peft_config = None
    if cfg.reward_lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.reward_lora_r, lora_alpha=2 * cfg.reward_lora_r, task_type="SEQ_CLS")
    callback = _LogCallback(progress or (lambda _line: None))
    with train_then_replace(out_dir) as scratch:
        trainer = RewardTrainer(
            model=model,
            args=reward_args(cfg, str(scratch.work / "trainer"), seed),
            train_dataset=Dataset.from_list(list(pairs)),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trained: Any = trainer.model  # a PeftModel with LoRA (merged below), else the PreTrainedModel
        if peft_config is not None:
            trained = trained.merge_and_unload()
        trained.save_pretrained(str(scratch.result))
        tokenizer.save_pretrained(str(scratch.result))
        write_lineage(scratch.result, base=base_dir, pairs=len(pairs), judge=cfg, seed=seed, **(lineage or {}))
    losses = callback.losses or [float("nan")]
    return {
        "loss": sum(losses) / len(losses),
        "final_loss": losses[-1],
        "accuracy": callback.accuracies[-1] if callback.accuracies else float("nan"),
        "steps": float(trainer.state.global_step),
        "pairs": float(len(pairs)),
        "seconds": seconds,
    }


def reward_rows(
    cfg: JudgeConfig, rows: Sequence[Record], earlier: Sequence[DatasetRef], seed: int
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """The labelled rows a round's reward model learns from, and the dev rows its threshold is fitted on (labelled
    samples of training prompts, not the campaign's validation split).

    With bank=rounds and labelled rows in the `earlier` rounds' judged files, only those are used (the model
    never learns from the round it judges); in round 1, or with bank=file, `build_bank` decides (round 1
    bootstraps `bootstrap` of this round's rows, labelled by the verifier). Whole prompts, drawn by `seed`,
    are held out until `judge.dev_size` rows (at most half) are dev rows: a prompt is never in both.

    Returns:
        (training rows, dev rows, facts saying where they came from).
    """
    labelled = bank_from_rounds(earlier, cfg.bank_size) if cfg.bank == "rounds" else []
    if labelled:
        facts: dict[str, Any] = {"bank_source": "rounds", "from_rounds": len(labelled), "bootstrapped": 0}
    else:
        labelled, facts = build_bank(cfg, rows, earlier, seed)
    prompts = list(dict.fromkeys(row["prompt"] for row in labelled))
    random.Random(seed).shuffle(prompts)
    wanted, taken, held = min(cfg.dev_size, len(labelled) // 2), 0, set()
    for prompt in prompts:
        if taken >= wanted:
            break
        held.add(prompt)
        taken += sum(row["prompt"] == prompt for row in labelled)
    train = [row for row in labelled if row["prompt"] not in held]
    validation = [row for row in labelled if row["prompt"] in held]
    return train, validation, {**facts, "validation_rows": len(validation)}


def round_reward_model(
    config: CampaignConfig,
    rows: Sequence[Record],
    policy: ModelRef | None,
    earlier: Sequence[DatasetRef],
    out_dir: str | Path,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, float], dict[str, Any]]:
    """The round's reward model: `judge.reward_model` as is, or one trained now into `out_dir`.

    Training reads the training part of `reward_rows` (the `earlier` rounds' labelled rows, or `bank_path`;
    in round 1 `bootstrap` of this round's own rows labelled by the verifier; validation prompts held out),
    turns it into correct-vs-wrong pairs and trains from the judge model (`tasks.judging.build.judge_model`).

    Returns:
        (the reward model's folder, `judge/...` metrics without the prefix, lineage facts).
    """
    cfg = config.judge
    if cfg.reward_model is not None:
        return cfg.reward_model, {}, {"reward_model": cfg.reward_model}
    bank, _, facts = reward_rows(cfg, rows, earlier, seed)
    pairs = correct_wrong_pairs(
        bank, template=config.prompts.template, per_prompt=cfg.reward_pairs_per_prompt, seed=seed
    )
    base = judge_model(config, policy)
    trained = train_reward_model(
        pairs, base.base, out_dir, cfg, seed=seed, lineage={"bank": facts, "base_model": base}, progress=progress
    )
    metrics = {f"reward_{k}": v for k, v in trained.items()}
    metrics["bank_size"] = float(len(bank))
    facts = {**facts, "reward_model": str(Path(out_dir).resolve()), "reward_base": base}
    return str(out_dir), metrics, facts


def labelled_reward_model(
    cfg: JudgeConfig,
    labelled: Sequence[Record],
    base_dir: str,
    out_dir: str | Path,
    *,
    template: str,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, float]]:
    """The reward model of `selftrain judge-eval`: `judge.reward_model`, or one trained on `labelled` rows.

    Args:
        cfg: The judge config (`reward_*` settings; the kind is ignored).
        labelled: Rows with `prompt`, `response`, `correct` (the evaluation's bank split) to train on.
        base_dir: The checkpoint to train from (the judge model).
        out_dir: Where a trained model is saved.
        template: The policy's prompt template.
        seed: Seed of the pair draw and training.
        progress: Receives one-line progress reports.

    Returns:
        (the reward model's folder, training metrics; empty when `judge.reward_model` is used as is).
    """
    if cfg.reward_model is not None:
        return cfg.reward_model, {}
    pairs = correct_wrong_pairs(labelled, template=template, per_prompt=cfg.reward_pairs_per_prompt, seed=seed)
    metrics = train_reward_model(pairs, base_dir, out_dir, cfg, seed=seed, progress=progress)
    return str(out_dir), metrics
