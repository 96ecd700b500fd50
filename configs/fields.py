"""The building blocks every config section uses: the strict base, sane bounds and value checks."""

from __future__ import annotations

import re
import string
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
SAFE_NAME_RULE = "1-100 characters from A-Z a-z 0-9 . _ - , not starting with '.'"
# Deprecated dotted names and their new ones (validation and test used to be one "held-out" set).
OLD_NAMES = {"prompts.heldout_size": "prompts.validation_size", "prompts.heldout_path": "prompts.validation_path"}
# "The answer is N." at the very end, said only once in the response: the lookahead refuses a second answer
# stated in any case, as "answer is" or "Answer:" ("The Answer is 8. The answer is 7." earns nothing). "the" may
# start lower-case after "so". N is ASCII digits (`\d` also takes "７" or "٧"). One group: the answer. Read by
# tasks/judging/verifier.py.
DEFAULT_ANSWER_PATTERN = (
    r"(?s)^(?!(?i:.*answer(?:\s+is|\s*:).*answer(?:\s+is|\s*:)))(?:.*\s)?[Tt]he answer is (-?[0-9]+)\.\s*$"
)


class Strict(BaseModel):
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
    try:  # a conversion or format spec the question's text cannot take: "{prompt!z}", "{prompt:d}"
        template.format(prompt="")
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{{prompt}} cannot be filled in ({err})") from None
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
