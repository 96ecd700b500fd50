"""Config sections for how responses are scored: the judge kinds, their bank, calibration and cascade."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from configs.fields import DEFAULT_ANSWER_PATTERN, Strict, bounded, check_answer_pattern
from configs.schema_inputs import ModelConfig

REFERENCE_KINDS = ("meta-ranking", "label-transfer")  # the judges whose bank references vote with their labels


class CascadeConfig(Strict):
    """Model cascading: prompts the policy answers unreliably go to a stronger model."""

    model: ModelConfig = Field(description="The stronger model that answers routed prompts (greedy).")
    max_new_tokens: int = bounded(24, 1_024, "Longest answer of the stronger model, in tokens.", ge=1)


class JudgeConfig(Strict):
    """How responses are scored: by the verifier, or by an LLM judge reading two option tokens (no generation)."""

    kind: Literal["verifier", "pointwise", "meta-ranking", "label-transfer", "reward-model", "all-of"] = Field(
        "verifier",
        description=(
            "verifier: 1 if the final number equals the reference answer, else 0; "
            "pointwise: a causal LM's P(yes) to 'Is this answer correct?'; "
            "meta-ranking: a causal LM ranks the response against `references` labelled reference pairs to other "
            "prompts (which answer is more reliable, A or B) and the outcomes meet the references' labels in a "
            "vote weighted by each reference's measured ranking precision (Liu et al. 2024); "
            "label-transfer: the baseline that ran as meta-ranking before: after a labelled reference, P(yes) to "
            "'Is this answer correct too?' (or 'wrong too?'), averaged with weight_correct/weight_wrong; "
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
        "select.threshold as is). At most half the bank is held out. meta-ranking: the first half of them (by "
        "prompt) measures each reference's ranking precision (its vote weight), the other half the threshold.",
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
    require_work: bool | None = Field(
        None,
        description="A training row earns credit only when it shows right working: it states its computations "
        "('3 + 4 = 7', chains such as '3 + 4 = 7, 7 * 2 = 14'), each one holds, and the last result is the final "
        "answer; a bare 'The answer is N.' scores 0 even when N is right, so the policy cannot learn to guess. "
        "Governs what is kept for training (logged as judge/work_rate), never evaluation, which stays the strict "
        "answer check. Empty: on for the built-in task (prompts.source=arithmetic, whose worked solutions show "
        "every step), off for user files; set true for word problems in files whose answers are computed.",
    )
    weight_correct: float = Field(1.0, ge=0.0, description="label-transfer: vote weight of a correct reference.")
    weight_wrong: float = Field(1.0, ge=0.0, description="label-transfer: vote weight of a wrong reference.")
    weak_evidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="meta-ranking: strength of the weaker outcomes (ranked above a wrong reference, below a correct "
        "one) against the strong ones (above a correct reference: +1, below a wrong one: -1).",
    )
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

    @property
    def reads_bank(self) -> bool:
        """Whether the round's judge step builds a reference bank (`tasks.judging.reference_bank.build_bank`): the
        LLM judges, whose dev rows calibrate them (and whose references judge, for the reference kinds), and a
        reward model trained each round."""
        if self.kind in ("reward-model", "all-of"):
            return self.reward_model is None
        return self.kind != "verifier"

    @model_validator(mode="after")
    def _consistent(self) -> JudgeConfig:
        if self.bank == "file" and not self.bank_path:
            raise ValueError("judge.bank_path is required when judge.bank is 'file'")
        if self.bank_path and self.bank != "file":
            raise ValueError(
                f"judge.bank_path names a file, and judge.bank is {self.bank!r}, which would ignore it: set "
                "judge.bank: file, or leave judge.bank_path empty"
            )
        if self.bank_path and not self.reads_bank:
            uses = "judge.reward_model is given" if self.reward_model else f"judge.kind is {self.kind!r}"
            raise ValueError(
                f"judge.bank_path names a file, and no judge would read it ({uses}): use a judge that reads a "
                "reference bank (pointwise, meta-ranking, label-transfer, or a reward model trained each round), or "
                "leave judge.bank_path empty"
            )
        if 0 < self.panel < self.references:
            raise ValueError(f"judge.panel ({self.panel}) must be 0 or at least judge.references ({self.references})")
        if self.kind in REFERENCE_KINDS:  # their bank never holds more rows than these allow
            if self.bank_size < self.references:
                raise ValueError(
                    f"judge.bank_size ({self.bank_size}) must be at least judge.references ({self.references})"
                )
            if self.bank == "rounds" and self.bootstrap < self.references:
                raise ValueError(
                    f"judge.bootstrap ({self.bootstrap}) must be at least judge.references ({self.references}) "
                    "with judge.bank=rounds: round 1's bank holds only that many of its own samples"
                )
        if self.weight_correct + self.weight_wrong <= 0:
            raise ValueError("judge.weight_correct and judge.weight_wrong must not both be 0")
        return self
