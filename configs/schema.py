"""The typed schema of a selftrain campaign: every field documented, validated at the edge.

The same descriptions appear in `selftrain schema`, in the Prefect UI form of a deployment and in
validation errors, so they are written for users, not for the code.

Sizes have two limits: a hard one (`ge`/`le`, never crossed) and a documented *sane bound* (`soft_max`
in the JSON schema, "at most N" in the description) that only `limits.allow_large: true` lets a value
exceed, because a typo such as `generate.k=100000` would otherwise start a campaign of many hours.

This module holds the whole campaign and its tracking and limits sections; the other sections live in
`schema_inputs` (model, prompts), `schema_judge` (judge, cascade) and `schema_steps` (generate, select,
train, evaluate, monitor), on the building blocks of `configs.fields`, and are re-exported from here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

# The sections live in their own modules; they are re-exported here, where every caller imports them from.
from configs.fields import (
    DEFAULT_ANSWER_PATTERN,
    OLD_NAMES,
    SAFE_NAME,
    SAFE_NAME_RULE,
    Strict,
    bounded,
    check_answer_pattern,
    check_safe_name,
    check_template,
)
from configs.schema_inputs import ModelConfig, PromptsConfig
from configs.schema_judge import CascadeConfig, JudgeConfig
from configs.schema_scale import ScaleConfig, StorageConfig
from configs.schema_steps import (
    TRAIN_DTYPE_METRICS,
    EvaluateConfig,
    ExtraSetConfig,
    GenerateConfig,
    MonitorConfig,
    SelectConfig,
    TrainConfig,
)

__all__ = [
    "DEFAULT_ANSWER_PATTERN",
    "OLD_NAMES",
    "SAFE_NAME",
    "SAFE_NAME_RULE",
    "TRAIN_DTYPE_METRICS",
    "CampaignConfig",
    "CascadeConfig",
    "EvaluateConfig",
    "ExtraSetConfig",
    "GenerateConfig",
    "JudgeConfig",
    "LimitsConfig",
    "ModelConfig",
    "MonitorConfig",
    "PromptsConfig",
    "SelectConfig",
    "Strict",
    "TrackingConfig",
    "TrainConfig",
    "bounded",
    "check_answer_pattern",
    "check_safe_name",
    "check_template",
    "soft_bounded_values",
]


class TrackingConfig(Strict):
    """Where runs, data and checkpoints are recorded."""

    output_dir: str = Field("runs", description="Root folder for round data, adapters and the embedded MLflow store.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db.",
    )
    experiment: str = Field("selftrain", description=f"MLflow experiment name: {SAFE_NAME_RULE}.")

    @field_validator("experiment")
    @classmethod
    def _safe_experiment(cls, value: str) -> str:
        return check_safe_name(value)


class LimitsConfig(Strict):
    """Sane bounds: fields documented with "at most N" refuse larger values unless this says otherwise."""

    allow_large: bool = Field(
        False,
        description=(
            "Allow values above the documented sane bounds (generate.k at most 64, sizes at most 10,000, "
            "tokens at most 1,024, templates at most 4,000 characters, prompts in files at most 16,000 "
            "characters, ...). Check time and memory first: generate.k=100000 is about 10 hours a round."
        ),
    )


MAX_SEED = (2**32 - 1 - 1001) // 1000  # round seeds (tasks.layout.round_seed, up to round 1000, + 1) fit 32 bits


class CampaignConfig(Strict):
    """A self-training campaign: `rounds` rounds of generate, judge, select, train, evaluate."""

    name: str = Field("campaign", description=f"Campaign name, used in run names and folders: {SAFE_NAME_RULE}.")
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description=(
            f"Seed for prompts, sampling and training, 0..{MAX_SEED:,}; each round derives its own (seed * 1000 + "
            "round, which numpy's and torch's seeding take only below 2**32)."
        ),
    )
    rounds: int = Field(3, ge=1, le=1000, description="Number of self-training rounds.")
    start_from: Literal["base", "champion"] = Field(
        "base",
        description=(
            "base: round 0 is the base model; champion: continue from the policy behind the `champion` alias of "
            "the MLflow registered model `selftrain-<name>` (the base when there is none yet), so a scheduled "
            "campaign keeps improving the same model."
        ),
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The starting policy.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="Training and held-out prompts.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="Sampling settings.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="How responses are scored.")
    select: SelectConfig = Field(default_factory=SelectConfig, description="Which responses are kept.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning settings.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Held-out evaluation.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Per-round stability monitors.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Where results go.")
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="One base location for campaign folders and Prefect results."
    )
    scale: ScaleConfig = Field(default_factory=ScaleConfig, description="The Ray cluster for sharded steps.")
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="Sane bounds on sizes.",
        # Left out of the dump while off, so campaign identities and logged params stay as they were.
        exclude_if=lambda limits: not limits.allow_large,
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value)

    @model_validator(mode="after")
    def _base_init_starts_from_base(self) -> CampaignConfig:
        if self.train.init == "base" and self.start_from == "champion":
            raise ValueError(
                "train.init=base retrains from the base model every round, which start_from=champion would not "
                "carry on; set start_from: base or train.init: continue"
            )
        return self

    @model_validator(mode="after")
    def _warm_start_has_data(self) -> CampaignConfig:
        if self.generate.from_round > 1 and not (self.select.gold_examples and self.train.method in ("sft", "superhf")):
            raise ValueError(
                "generate.from_round: rounds before it sample nothing, so they need select.gold_examples > 0 and "
                "train.method sft or superhf (DPO pairs and GRPO groups come from samples)"
            )
        if self.train.warm_start_epochs is not None and self.generate.from_round == 1:
            raise ValueError(
                "train.warm_start_epochs sets the epochs of the rounds before generate.from_round, and "
                "generate.from_round is 1: no round is a warm start; set generate.from_round above 1 or leave "
                "train.warm_start_epochs empty"
            )
        return self

    def train_for_round(self, round_number: int) -> TrainConfig:
        """The training settings of round `round_number`: `train`, with `train.warm_start_epochs` as its epochs in
        the rounds before `generate.from_round` when that is set."""
        warm = self.train.warm_start_epochs
        if warm is None or round_number >= self.generate.from_round:
            return self.train
        return self.train.model_copy(update={"epochs": warm})

    @property
    def requires_work(self) -> bool:
        """Whether training rows must show right working (`judge.require_work`; empty: on for the built-in task,
        whose answers are computed and whose worked solutions show every step, off for user files)."""
        if self.judge.require_work is not None:
            return self.judge.require_work
        return self.prompts.source == "arithmetic"

    def few_shot_baseline_config(self) -> CampaignConfig:
        """The campaign as its few-shot baseline (`evaluate.few_shot_baseline`) is scored: held-out prompts behind the
        worked examples (`evaluate.few_shot`), written in `evaluate.few_shot_working` when set, else in
        `prompts.working`."""
        working = self.evaluate.few_shot_working or self.prompts.working
        return self.model_copy(
            update={
                "evaluate": self.evaluate.model_copy(update={"few_shot": True}),
                "prompts": self.prompts.model_copy(update={"working": working}),
            }
        )

    @model_validator(mode="after")
    def _method_has_data(self) -> CampaignConfig:
        if self.train.method == "dpo" and self.generate.k < 2:
            raise ValueError(
                "train.method=dpo trains on a best and a worst sample of each prompt, and generate.k=1 samples one: "
                "set generate.k to at least 2"
            )
        batch = self.train.grpo_batch_prompts
        if self.train.method == "grpo" and self.prompts.train_size < batch:
            raise ValueError(
                f"train.method=grpo samples {batch} prompts per generation batch (train.grpo.generation_batch_size or "
                f"train.batch_size over train.grpo.num_generations), more than prompts.train_size="
                f"{self.prompts.train_size}: raise prompts.train_size or lower the batch"
            )
        return self

    @model_validator(mode="after")
    def _resampling_has_its_check(self) -> CampaignConfig:
        if self.evaluate.resample_failed_working and not self.requires_work:
            raise ValueError(
                f"evaluate.resample_failed_working={self.evaluate.resample_failed_working} resamples answers whose "
                "working fails judge.require_work's check, and judge.require_work is off for this campaign: set "
                "judge.require_work: true (answers that state their computations) or set it to 0"
            )
        return self

    @model_validator(mode="after")
    def _few_shot_working_applies(self) -> CampaignConfig:
        if self.evaluate.few_shot_baseline and self.prompts.few_shot == 0:
            raise ValueError(
                "evaluate.few_shot_baseline scores the start behind prompts.few_shot worked examples, and "
                "prompts.few_shot is 0: set prompts.few_shot above 0 or turn evaluate.few_shot_baseline off"
            )
        if self.evaluate.few_shot_working is not None and not self.evaluate.few_shot_baseline:
            raise ValueError(
                "evaluate.few_shot_working writes the few-shot baseline's examples, and evaluate.few_shot_baseline "
                "is off; turn it on or leave evaluate.few_shot_working empty"
            )
        if self.evaluate.few_shot_working is not None and self.prompts.source != "arithmetic":
            raise ValueError(
                "evaluate.few_shot_working rewrites the built-in task's examples (prompts.source: arithmetic); a "
                "file's examples show their own solution column, so leave it empty"
            )
        return self

    @model_validator(mode="after")
    def _shards_within_prompts(self) -> CampaignConfig:
        for field, shards, prompts, what in (
            ("generate.shards", self.generate.shards, self.prompts.train_size, "prompts.train_size"),
            ("evaluate.shards", self.evaluate.shards, self.prompts.validation_size, "prompts.validation_size"),
        ):
            if shards > prompts:
                raise ValueError(f"{field}={shards} is more shards than prompts ({what}={prompts}); at most one each")
        return self

    @model_validator(mode="after")
    def _chat_needs_sft(self) -> CampaignConfig:
        if self.prompts.chat and self.train.method != "sft":
            raise ValueError(
                f"prompts.chat=true renders prompts with a chat template, which train.method={self.train.method} "
                "does not train on; use train.method: sft or prompts.chat: false"
            )
        return self

    @model_validator(mode="after")
    def _within_sane_bounds(self) -> CampaignConfig:
        if not self.limits.allow_large:
            for where, value, soft_max in soft_bounded_values(self):
                size = f"{len(value):,} characters long, above" if isinstance(value, str) else f"{value} is above"
                raise ValueError(
                    f"{where}{' is ' if isinstance(value, str) else '='}{size} its sane bound of {soft_max:,}; "
                    "set limits.allow_large=true to allow it"
                )
        return self


def soft_bounded_values(section: BaseModel, prefix: str = "") -> list[tuple[str, Any, int]]:
    """(dotted field, value, bound) for every value above its `soft_max` (text: its length), depth first."""
    over = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            over.extend(soft_bounded_values(value, f"{prefix}{name}."))
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        soft_max = extra.get("soft_max")
        if isinstance(soft_max, int) and value is not None:
            size = len(value) if isinstance(value, str) else value
            if size > soft_max:
                over.append((f"{prefix}{name}", value, soft_max))
    return over
