"""Fine-tuning step: GRPO (TRL `GRPOTrainer` + PEFT LoRA) on the round's prompts, the strict verifier as reward.

GRPO (Shao et al. 2024, DeepSeekMath) samples a group of `num_generations` completions per prompt, scores each,
and pushes up the completions that beat their group's mean reward: reinforcement learning with verifiable
rewards (TULU 3's RLVR) with no value model. The reward is the campaign's verifier in its strict form
(`tasks.judging.verifier.is_correct` with `judge.answer_pattern`), read on each completion cut at the first of
`generate.stop` as the sampler cuts it, so a completion earns credit exactly when a sampled response would.

TRL samples its own completions with `model.generate` (no vLLM on this CPU), from the bare templated prompt,
at `generate.temperature` / `generate.top_p`, at most `generate.max_new_tokens` tokens. The round's generate
and judge steps still run before it (with `generate.k`, which can be small): they give the round's pass rate
and the judged rows later rounds use, but GRPO does not train on them. The KL term (`train.grpo.beta` > 0)
is to the round's starting policy: for a fresh LoRA, the base (TRL disables the adapter for the reference);
for a continued adapter, a copy of it as it was loaded (TRL adds it as a "ref" adapter).
A prompt whose group all scored the same gives no gradient (its advantages are all zero); the share of such
groups is logged as `train/no_signal_share` (DAPO, Yu et al. 2025, resamples them away).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from datasets import Dataset
from peft import PeftModel
from prefect import task
from transformers import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from configs.schema import CampaignConfig, GenerateConfig, TrainConfig
from models.loading import load_policy, set_torch_threads
from models.sampling import cut_at_stop
from models.training import StepProgress, cpu_trainer_settings, lora_config, train_then_replace
from tasks.adapter_record import record_adapter
from tasks.judging.verifier import is_correct, shows_work
from tasks.layout import RESUMABLE
from tasks.progress import emit
from tasks.records import DatasetRef, ModelRef, Record, read_records
from tasks.tracking import RoundContext

RewardFn = Callable[..., list[float]]


def grpo_args(cfg: TrainConfig, gen: GenerateConfig, output_dir: str, seed: int) -> GRPOConfig:
    """TRL settings for LoRA GRPO on this CPU: no bf16, no gradient checkpointing, `model.generate` sampling."""
    settings = cfg.grpo
    return GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        generation_batch_size=cfg.grpo_generation_batch,
        num_generations=settings.num_generations,
        max_completion_length=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        beta=settings.beta,
        learning_rate=settings.learning_rate or cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=settings.max_steps or -1,
        use_vllm=False,
        **cpu_trainer_settings(seed),
    )


@dataclass
class GroupRecorder:
    """Wraps a reward function and keeps every reward it gave, grouped by prompt within each generation batch."""

    reward: RewardFn
    groups: list[list[float]] = field(default_factory=list)  # TRL logs it as `rewards/GroupRecorder/mean`

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float | None]:
        rewards = self.reward(prompts=prompts, completions=completions, **kwargs)
        by_prompt: dict[str, list[float]] = {}
        for prompt, value in zip(prompts, rewards, strict=True):
            by_prompt.setdefault(prompt, []).append(float(value))
        self.groups.extend(by_prompt.values())
        return list[float | None](rewards)  # TRL's reward type (None: no reward for that completion)


def verifier_reward(answer_pattern: str, stop: Sequence[str], *, require_work: bool = False) -> RewardFn:
    """The strict verifier as a TRL reward function: 1.0 when the completion, cut at the first stop string, states
    the row's `answer` in the expected form (and, with `require_work`, shows right working for it: a bare right
    guess earns nothing, as in SFT's selection), else 0.0."""

    def credit(text: str, expected: Any) -> bool:
        return is_correct(text, expected, answer_pattern) and (not require_work or shows_work(text, answer_pattern))

    def reward(prompts: list[str], completions: list[str], answer: list[Any], **_: Any) -> list[float]:
        return [
            1.0 if credit(cut_at_stop(text, stop), expected) else 0.0
            for text, expected in zip(completions, answer, strict=True)
        ]

    return reward


def group_summary(groups: Sequence[Sequence[float]]) -> dict[str, float]:
    """Reward mean and spread over every completion, and the share of groups whose rewards were all equal."""
    values = [value for group in groups for value in group]
    if not values:
        return {"reward_mean": float("nan"), "reward_std": float("nan"), "no_signal_share": float("nan")}
    return {
        "reward_mean": statistics.fmean(values),
        "reward_std": statistics.pstdev(values),
        "no_signal_share": sum(1 for group in groups if len(set(group)) == 1) / len(groups),
    }


class _LogCallback(StepProgress):
    """Keeps TRL's per-step logs (reward, kl, loss) and reports progress."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__(report)
        self.logs: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "reward" in logs:
            self.logs.append({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})
        rate = self.rate_if_due(state) if self.logs else None
        if rate is not None:
            last = self.logs[-1]
            self.report(
                f"train(grpo): step {state.global_step}/{state.max_steps}, reward {last['reward']:.3f}, "
                f"kl {last.get('kl', float('nan')):.4f}, {rate:.2f} steps/s"
            )


@dataclass
class GRPOResult:
    """What a GRPO run measured: its summary metrics and the mean reward of each optimiser step, in order."""

    metrics: dict[str, float]
    step_rewards: list[float]


def train_grpo(
    base: str,
    adapter: str | None,
    rows: Sequence[Record],
    cfg: TrainConfig,
    gen: GenerateConfig,
    out_dir: str | Path,
    *,
    template: str,
    reward: RewardFn,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> GRPOResult:
    """Train a LoRA adapter with GRPO on `rows` and save it to `out_dir`.

    Args:
        base: Base model directory or hub id.
        adapter: The starting policy's adapter directory (trained further), or None for a fresh adapter.
        rows: Prompt records (`prompt`, `answer`); the prompt is rendered with `template`.
        cfg: Training settings (`grpo`, LoRA, batch size, epochs, learning rate).
        gen: Sampling settings GRPO shares with generation (temperature, top_p, max_new_tokens).
        out_dir: Where the adapter is written (replaced whole, never left half-written).
        template: The prompt template, holding `{prompt}`.
        reward: A TRL reward function (`prompts`, `completions`, dataset columns such as `answer`).
        seed: Seeds sampling, data order and LoRA initialisation.
        progress: Receives one-line progress reports.

    Returns:
        Metrics (`reward_mean`, `reward_std`, `no_signal_share` over every group sampled; `kl` mean over steps;
        `reward_first`, `reward_last`: mean reward of the first and last three steps; `steps`, `prompts`,
        `completions`, `seconds`) and the per-step mean rewards.
    """
    model, tokenizer = load_policy(base, adapter, trainable=True)
    recorder = GroupRecorder(reward)
    callback = _LogCallback(progress or (lambda _line: None))
    dataset = Dataset.from_list(
        [{"prompt": template.format(prompt=row["prompt"]), "answer": str(row["answer"])} for row in rows]
    )
    with train_then_replace(out_dir) as scratch:
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=recorder,
            args=grpo_args(cfg, gen, str(scratch.work), seed),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(cfg) if adapter is None else None,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        # Only the trained adapter: for a continued one TRL added its starting copy as "ref" (the KL reference),
        # which PEFT would save beside it in ref/ (the starting policy again, in the round folder and the registry).
        cast(PeftModel, trainer.model).save_pretrained(str(scratch.result), selected_adapters=["default"])
    steps = [log["reward"] for log in callback.logs]
    kls = [log["kl"] for log in callback.logs if "kl" in log]
    metrics = {
        **group_summary(recorder.groups),
        "kl": statistics.fmean(kls) if kls else float("nan"),
        "reward_first": statistics.fmean(steps[:3]) if steps else float("nan"),
        "reward_last": statistics.fmean(steps[-3:]) if steps else float("nan"),
        "steps": float(trainer.state.global_step),
        "prompts": float(len(rows)),
        "completions": float(sum(len(group) for group in recorder.groups)),
        "seconds": seconds,
    }
    return GRPOResult(metrics=metrics, step_rewards=steps)


@task(name="train", **RESUMABLE)
def grpo_train_task(
    config: CampaignConfig, policy: ModelRef, prompts: DatasetRef, out_dir: str, ctx: RoundContext
) -> ModelRef | None:
    """GRPO on the round's prompts that have a reference answer; return the new policy, or None when fewer than
    `train.min_examples` prompts have one."""
    rows = [row for row in read_records(prompts) if row.get("answer") is not None]
    need, why = config.train.min_examples, f"train.min_examples={config.train.min_examples}"
    if config.train.grpo_batch_prompts > need:  # TRL forms no generation batch from fewer: zero steps
        need, why = config.train.grpo_batch_prompts, "the prompts one generation batch takes"
    if len(rows) < need:
        emit(f"train(grpo): skipped, {len(rows)} prompts with answers < {need}, {why}")
        ctx.log_metrics({"train/skipped": 1.0, "train/examples": float(len(rows))})
        return None
    set_torch_threads(config.model.torch_threads)
    seed = ctx.seed
    emit(f"train(grpo): starting on {len(rows)} prompts, {config.train.grpo.num_generations} completions each")
    result = train_grpo(
        policy.base,
        policy.adapter,
        rows,
        config.train,
        config.generate,
        out_dir,
        template=config.prompts.template,
        reward=verifier_reward(config.judge.answer_pattern, config.generate.stop, require_work=config.requires_work),
        seed=seed,
        progress=emit,
    )
    return record_adapter(config, policy, out_dir, ctx, result.metrics, seed=seed, data=prompts)
