"""Config sections for the other loop steps: generate, select, train, evaluate and the monitors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs.fields import SAFE_NAME_RULE, Strict, bounded, check_safe_name
from configs.schema_filters import FilterConfig


class GenerateConfig(Strict):
    """Sampling k responses per prompt from the current policy."""

    k: int = bounded(4, 64, "Responses sampled per prompt.", ge=1)
    temperature: float = Field(0.8, gt=0.0, le=5.0, description="Sampling temperature (> 0).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    max_new_tokens: int = bounded(24, 1_024, "Longest response, in tokens.", ge=1)
    stop: list[str] = Field(["\n"], description="A response ends at the first of these strings (or at EOS).")
    batch_size: int = bounded(32, 512, "Sequences generated together; batches are grouped by length.", ge=1)
    shards: int = Field(
        1,
        ge=1,
        description=(
            "Split the training prompts across this many Ray workers (scale.ray_address), each loading the policy "
            "once; samples are seeded per prompt, so any shard count gives the same samples. 1: in process."
        ),
    )
    few_shot_rounds: int | None = Field(
        None,
        ge=0,
        description=(
            "With prompts.few_shot > 0: rounds 1..N sample with the few-shot prefix, later rounds sample from the "
            "bare prompt (the trained policy no longer needs the examples, and generation is faster); "
            "empty: every round uses the prefix."
        ),
    )
    from_round: int = Field(
        1,
        ge=1,
        description=(
            "The first round that samples. Earlier rounds sample nothing and train on select.gold_examples alone "
            "(a supervised warm start, as ReST-EM and STaR start from a fine-tuned model); later rounds sample "
            "from the policy they trained. 1: every round samples."
        ),
    )
    rationalize: bool = Field(
        False,
        description=(
            "STaR rationalization (Zelikman et al. 2022): training prompts with an answer for which none of the k "
            "samples was verified are sampled again (k each) with the answer given as a hint (`hint`); the "
            "verified responses (judge.require_work applies) are kept for training with the bare prompt, the "
            "hint removed, marked `source: rationalized` (metrics rationalize/*)."
        ),
    )
    hint: str = Field(
        "{prompt} (The answer is {answer}.)",
        description="rationalize: how a failed question is shown with its answer as a hint; `{prompt}` and "
        "`{answer}` are its placeholders, and the result goes into prompts.template.",
    )

    @field_validator("hint")
    @classmethod
    def _hint(cls, value: str) -> str:
        if "{prompt}" not in value or "{answer}" not in value:
            raise ValueError("must contain {prompt} and {answer}")  # the loader names the field
        try:
            value.format(prompt="", answer="")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as error:  # {answer.x}, {answer[0]}
            raise ValueError(f"only {{prompt}} and {{answer}} may be placeholders ({error})") from None
        return value


class SelectConfig(Strict):
    """Which judged responses survive into training, and what real data joins them."""

    threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Keep responses whose judge score (0..1) is at least this (0 keeps all)."
    )
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
            "rows: a prompt's worked `solution` (the built-in task's, or a file's `solution` column), else its "
            "`answer` (' The answer is N.'), drawn "
            "from the round's prompts. Keeping real data in the mix guards against model collapse (Shumailov et "
            "al. 2024; Gerstgrasser et al. 2024). 0: none."
        ),
    )
    gold_examples: int = Field(
        0,
        ge=0,
        le=10_000,
        description=(
            "Real (gold) examples added to every round's selected rows: the worked `solution` (arithmetic, and "
            "files with a `solution` column; else ' The answer is N.') of this many training-split prompts, the "
            "same draw in every round of a campaign (seeded by `seed`), whatever prompts the round samples. A "
            "supervised warm start on real data: under `train.init: base` the accumulated set holds them once; "
            "under judge.require_work only targets that show right working are added (so not ' The answer is N.'). "
            "DPO pairs only those among the round's prompts. 0: none."
        ),
    )
    gold_rounds: int | None = Field(
        None,
        ge=1,
        description=(
            "gold_examples join rounds 1..N only; later rounds train on their own verified rows (with train.init: "
            "continue, on top of the policy the warm start trained). Empty: every round."
        ),
    )
    filters: list[FilterConfig] = Field(
        [],
        description=(
            "Data filters applied after the judge's threshold, cap and dedupe (and before diversity and gold), in "
            "list order, each keeping part of what the one before kept: perplexity (POINTS), confidence (CLEAR), "
            "color (CoLoR-Filter), dsir (DSIR); see `tasks/filters.py`. Every row records its scores (`filters`), "
            "`kept_by` and `reason`; with a threshold of 0 and max_per_prompt >= generate.k the filters alone "
            "select. A kind's name alone ([perplexity, dsir]) is that filter with its defaults. Empty: none."
        ),
    )

    @field_validator("filters", mode="before")
    @classmethod
    def _kind_names(cls, value: Any) -> Any:
        # `select.filters=[perplexity]` reads as a list of names: each is its kind with the kind's defaults.
        return (
            [{"kind": item} if isinstance(item, str) else item for item in value] if isinstance(value, list) else value
        )


class GRPOSettings(Strict):
    """method=grpo: Group Relative Policy Optimization (Shao et al. 2024) through TRL's GRPOTrainer with LoRA, the
    campaign's verifier (strict form) as the reward."""

    num_generations: int = Field(
        4, ge=2, le=64, description="Completions sampled per prompt (a group); advantages are relative within it."
    )
    generation_batch_size: int | None = Field(
        None,
        ge=2,
        description=(
            "Completions generated together (whole groups): a multiple of num_generations and of train.batch_size; "
            "empty: train.batch_size."
        ),
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimiser steps per round; empty: train.epochs passes over the round's prompts."
    )
    beta: float = Field(
        0.04,
        gt=0.0,
        description="Weight of the KL to the round's starting policy: the base model for a fresh LoRA (the policy "
        "with it disabled), the continued adapter's starting copy otherwise (TRL's 'ref' adapter); > 0, so TRL "
        "measures and logs it.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        description="Learning rate of GRPO steps; empty: train.learning_rate. Continuing a trained adapter wants a "
        "far lower rate than a fresh LoRA's SFT: Gemma's champion collapsed at 5e-4 and held at 2e-5 "
        "(benchmarks/results/warm_start_rounds.txt section 43).",
    )


TRAIN_DTYPE_METRICS = {"base_dtype": "base_bfloat16", "head_dtype": "head_bfloat16"}
"""`TrainConfig`'s training dtypes (float32, bfloat16 or auto), each with the `train/` metric that records 1 when the
round trained in bfloat16 (what `auto` resolved to on that machine)."""


class TrainConfig(Strict):
    """LoRA fine-tuning on the round's judged data: SFT, DPO or SuperHF (TRL + PEFT)."""

    method: Literal["sft", "dpo", "superhf", "grpo"] = Field(
        "sft",
        description=(
            "sft: loss on the selected completions only; dpo: TRL DPOTrainer on preference pairs built per prompt "
            "from all judged samples (see dpo_pairs, dpo_reference); superhf: SFT on the selected (best-of-k) rows "
            "plus `kl_weight` x KL(policy || round's starting policy) on the completion tokens (Mukobi et al. 2023); "
            "grpo: TRL GRPOTrainer on the round's prompts, sampling its own groups, the strict verifier as reward "
            "(see `grpo`; generate and judge still run, with generate.k, for the round's pass-rate metrics)."
        ),
    )
    init: Literal["continue", "base"] = Field(
        "continue",
        description=(
            "continue: train the round's starting policy (the last promoted one) further; base: ReST-EM (Singh et "
            "al. 2023): a fresh LoRA on the base model every round, trained on the verified rows selected in this "
            "and every earlier round (deduplicated by prompt and response, capped per prompt), while sampling "
            "still uses the last promoted policy. base needs method sft or superhf and start_from: base."
        ),
    )
    max_per_prompt_accumulated: int | None = Field(
        None,
        ge=1,
        description="init=base: at most this many accumulated rows per prompt (newest rounds first); "
        "empty: select.max_per_prompt.",
    )
    grpo: GRPOSettings = Field(default_factory=GRPOSettings, description="method=grpo settings.")
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
    warm_start_epochs: float | None = Field(
        None,
        gt=0.0,
        le=20,
        exclude_if=lambda epochs: epochs is None,
        description=(
            "Passes over the gold rows in the rounds before generate.from_round (the warm start, which samples "
            "nothing); empty: train.epochs. The warm start's policy only samples the next round's rows, and with "
            "train.init: base the next round retrains from the base model on those rows and the gold ones."
        ),
    )
    base_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        exclude_if=lambda dtype: dtype == "float32",
        description=(
            "method=sft: the frozen base weights' dtype while training (the LoRA adapter, its gradients and the "
            "optimiser stay float32; generation and evaluation always load float32). bfloat16 is faster only on "
            "CPUs with bfloat16 instructions (AVX512-BF16 or AMX); elsewhere it is emulated and slower. auto: "
            "bfloat16 where the CPU has them, else float32; the choice goes into the adapter's lineage and the "
            "metric train/base_bfloat16."
        ),
    )
    head_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        exclude_if=lambda dtype: dtype == "float32",
        description=(
            "method=sft: the dtype of the LM head's products in the training loss, for a frozen bias-free head "
            "(a LoRA policy's); the body, the softmax and its sums stay float32. bfloat16 is faster only on CPUs "
            "with bfloat16 instructions; auto: bfloat16 where the CPU has them, else float32; the choice goes "
            "into the adapter's lineage and the metric train/head_bfloat16."
        ),
    )
    average_from: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        exclude_if=lambda share: share is None,
        description=(
            "method=sft: save the uniform average of the adapter's weights after every optimiser step from this "
            "share of training on (0.5: the last half), not the last step's weights: stochastic weight averaging "
            "(Izmailov et al. 2018; dense, as SWAD, Cha et al. 2021, for out-of-domain reach); empty: the last step's."
        ),
    )
    neftune_alpha: float | None = Field(
        None,
        gt=0.0,
        exclude_if=lambda alpha: alpha is None,
        description=(
            "method=sft: NEFTune (Jain et al. 2023): uniform noise of magnitude alpha / sqrt(tokens x width) on the "
            "input embeddings while training (transformers' neftune_noise_alpha), never at inference. The paper's "
            "5 is for unscaled embeddings; Gemma scales its embeddings to an RMS near 1, so it needs far more "
            "(40 is about a tenth of that RMS for 65-token rows); empty: no noise."
        ),
    )
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

    @property
    def grpo_generation_batch(self) -> int:
        """GRPO's completions generated together: `grpo.generation_batch_size`, else `batch_size`."""
        return self.grpo.generation_batch_size or self.batch_size

    @property
    def grpo_batch_prompts(self) -> int:
        """The distinct prompts of one GRPO generation batch (its completions are whole groups of each)."""
        return self.grpo_generation_batch // self.grpo.num_generations

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.init == "base" and self.method not in ("sft", "superhf"):
            raise ValueError(f"train.init=base needs train.method sft or superhf, not {self.method}")
        for field in TRAIN_DTYPE_METRICS:
            if getattr(self, field) == "bfloat16" and self.method != "sft":
                raise ValueError(
                    f"train.{field}=bfloat16 is built for train.method=sft only, not {self.method} "
                    f"(whose reference model and losses assume float32); use train.{field}: float32"
                )
        for field in ("average_from", "neftune_alpha"):
            if getattr(self, field) is not None and self.method != "sft":
                raise ValueError(f"train.{field} is built for train.method=sft only, not {self.method}")
        if self.method == "grpo":
            groups, size = self.grpo.num_generations, self.grpo_generation_batch
            if size % groups or size % self.batch_size:
                given = "" if self.grpo.generation_batch_size else " (empty, so train.batch_size)"
                raise ValueError(
                    f"train.grpo.generation_batch_size={size}{given} must be a multiple of train.grpo."
                    f"num_generations={groups} and of train.batch_size={self.batch_size} (whole groups, whole "
                    "optimiser batches)"
                )
        return self


class ExtraSetConfig(Strict):
    """A labelled evaluation set scored beside the campaign (a real benchmark, say)."""

    name: str = Field(description=f"Name used in metric keys (`extra/<name>/accuracy`): {SAFE_NAME_RULE}.")
    path: str = Field(
        description="JSONL (or a .json array of objects), CSV or Parquet with `prompt` and `answer` on every row."
    )

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str) -> str:
        return check_safe_name(value)


GREEDY = "greedy"  # held-out answers decoded greedily, nothing resampled (`EvaluateConfig.decoding`)


class EvaluateConfig(Strict):
    """Held-out scoring and the promotion gate."""

    max_new_tokens: int = bounded(24, 1_024, "Longest greedy response on held-out prompts.", ge=1)
    shards: int = Field(
        1,
        ge=1,
        description=(
            "Split each held-out set across this many Ray workers (scale.ray_address), at most one per prompt of "
            "a set, and so the samples of evaluate.resample_failed_working; the answers do not depend on the split. "
            "1: in process."
        ),
    )
    few_shot: bool = Field(
        False,
        description=(
            "Score held-out prompts behind the few-shot prefix (prompts.few_shot examples); off: the bare prompt, "
            "the format the policy is trained on."
        ),
    )
    few_shot_baseline: bool = Field(
        False,
        description=(
            "With prompts.few_shot > 0: also score the starting policy behind the few-shot worked examples on test "
            "(and the OOD slice), once. It is the bar a self-trained policy must clear to show more than distilling "
            "its own few-shot prompt into bare prompts; the campaign's claim adds the final policy against it, "
            "paired on the same items (final/vs_few_shot/*)."
        ),
    )
    few_shot_working: Literal["plain", "ones", "ones_all", "digits"] | None = Field(
        None,
        description=(
            "source=arithmetic: the working the few-shot baseline's examples are written in (prompts.working's "
            "choices); empty: the campaign's prompts.working. The base imitates a long working worse than plain "
            "examples (the default's test: 0.105 behind its digit examples, 0.405 behind plain ones), so a campaign "
            "that trains a long working sets plain here: the higher bar."
        ),
        exclude_if=lambda working: working is None,
    )
    resample_failed_working: int = Field(
        0,
        ge=0,
        le=16,
        description=(
            "Verified resampling: where a greedy answer's own working fails the check judge.require_work applies "
            "to training rows (every stated computation holds and the last equals the final answer; it reads no "
            "reference answer), sample this many answers (generate.temperature, generate.top_p, the campaign's "
            "seed) and score the first whose working holds instead. Every set and policy is scored so, the few-shot "
            "baseline and the gate included; the greedy figures are logged beside (`val/greedy_accuracy` with its "
            "interval, `val/greedy_ci_low` and `val/greedy_ci_high`, ...). Needs judge.require_work on. 0: greedy only."
        ),
        exclude_if=lambda k: k == 0,
    )
    test_rounds: Literal["promoted", "final"] = Field(
        "promoted",
        description=(
            "When a campaign scores test (and the OOD slice): `promoted` scores each policy as it is promoted (a test "
            "figure per promoted round); `final` scores only the final policy (the champion), once, after the last "
            "round, saving a test pass per other promoted round. The starting policy is scored either way, and "
            "validation alone decides promotion in both."
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
            "two-sided exact McNemar test on the items they disagree on gives a p-value below this (tasks/gate.py; "
            "so a one-sided level of half of it); empty: no significance test, only the margin from the best accuracy."
        ),
    )
    extra_sets: list[ExtraSetConfig] = Field(
        [],
        description="Extra labelled sets (name and path each) scored for the starting and the final policy, with "
        "95% intervals: how to track a real benchmark beside the campaign.",
    )

    @property
    def decoding(self) -> str:
        """How held-out answers are decoded, in the words a registered version carries (its `decoding` tag):
        'greedy', or 'greedy, resample_failed_working=4'."""
        k = self.resample_failed_working
        return f"{GREEDY}, resample_failed_working={k}" if k else GREEDY

    @field_validator("extra_sets")
    @classmethod
    def _distinct_names(cls, value: list[ExtraSetConfig]) -> list[ExtraSetConfig]:
        names = [extra.name for extra in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"two extra sets are named {repeated[0]!r}; names must differ")
        return value


class MonitorConfig(Strict):
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
