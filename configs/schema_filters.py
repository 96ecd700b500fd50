"""Config of the seed papers' data filters that selection can apply after the judge (`select.filters`).

Each entry is one filter, told apart by `kind`; they run in list order, each on the rows the previous one kept
(`tasks/filters.py`). A filter sees no reference answer: only the prompts, the responses and, for `color` and
`dsir`, a small target set of gold solutions from the training split.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from configs.fields import Strict

SHARE = "Share of the filter's input rows kept, in (0, 1] (rounded up, so at least one row)."
TARGET = (
    "Gold solutions in the target set: that many training prompts (of the round's prompts, seeded draw) with a worked "
    "`solution` or an `answer` (under judge.require_work, a `solution` showing right working, as training's gold "
    "rows); at least 1."
)


class PerplexityFilter(Strict):
    """POINTS (Liu et al. 2024): keep the responses the fixed base model finds least surprising."""

    kind: Literal["perplexity"] = Field(
        "perplexity",
        description="POINTS: keep the rows whose response perplexity under the fixed base model is lowest.",
    )
    share: float = Field(0.5, gt=0.0, le=1.0, description=f"{SHARE} Lowest perplexity first.")


class ConfidenceFilter(Strict):
    """CLEAR (confidence-based filtering): agreement among a prompt's k samples plus the policy's own confidence."""

    kind: Literal["confidence"] = Field(
        "confidence",
        description="CLEAR: keep rows whose answer agrees with the other samples and whose log-probability is high.",
    )
    share: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "Share kept, ranked by agreement then the policy's mean token log-probability; empty: the automatic "
            "cut, keep a row when both its agreement and its mean token log-probability are at least their "
            "medians over the filter's input."
        ),
    )


class ColorFilter(Strict):
    """CoLoR-Filter (Brandfonbrener et al. 2024): loss under the prior minus loss under the prior tuned on a target."""

    kind: Literal["color"] = Field(
        "color", description="CoLoR-Filter: keep the rows whose loss falls most after a brief LoRA on a target set."
    )
    share: float = Field(0.5, gt=0.0, le=1.0, description=f"{SHARE} Largest loss reduction first.")
    target_size: int = Field(16, ge=1, description=TARGET)
    steps: int = Field(8, ge=1, le=1_000, description="Optimiser steps tuning the prior's LoRA on the target set.")
    learning_rate: float = Field(3e-3, gt=0.0, description="AdamW learning rate of those steps.")
    lora_r: int = Field(8, ge=1, le=256, description="Rank of the target LoRA (alpha = 2 x r, all linear layers).")


class DsirFilter(Strict):
    """DSIR (Xie et al. 2023): importance resampling toward a target set's hashed n-gram distribution."""

    kind: Literal["dsir"] = Field(
        "dsir", description="DSIR: resample rows by hashed n-gram importance weights toward a target set."
    )
    share: float = Field(0.5, gt=0.0, le=1.0, description=f"{SHARE} Drawn without replacement (Gumbel top-k).")
    target_size: int = Field(16, ge=1, description=TARGET)
    buckets: int = Field(4096, ge=16, le=1 << 20, description="Hash buckets of the unigram + bigram features.")


def _kind(value: Any) -> str | None:
    # A callable discriminator: Strict's mode="before" validators rule out pydantic's field discriminator.
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


FilterConfig = Annotated[
    Annotated[PerplexityFilter, Tag("perplexity")]
    | Annotated[ConfidenceFilter, Tag("confidence")]
    | Annotated[ColorFilter, Tag("color")]
    | Annotated[DsirFilter, Tag("dsir")],
    Discriminator(
        _kind,
        custom_error_type="filter_kind",
        custom_error_message="kind must be one of perplexity, confidence, color, dsir",
    ),
]
