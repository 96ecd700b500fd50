"""The verifier: a response is correct when it states one final answer, in the expected form, equal to the reference.

Strict by default: credit needs the response to end with the answer in the stated form ("The answer is N.",
trailing whitespace allowed, said once). An echo of the question whose last operand happens to be the
answer, two candidate answers ("The answer is 7 or 8."), or an expression without its result (" 8 - 4")
get none. The old lenient reading (the last "answer is N", else the last number) is kept as a diagnostic:
it tells how much of a score is the policy learning the format rather than the task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from configs.schema import DEFAULT_ANSWER_PATTERN, check_answer_pattern
from tasks.records import Record

_LENIENT_ANSWER = re.compile(r"answer is\s*(-?\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+")


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(check_answer_pattern(pattern))


def final_answer(response: str, pattern: str = DEFAULT_ANSWER_PATTERN) -> str | None:
    """The answer a response states in the expected form (`pattern`'s group), or None when it does not."""
    found = _compiled(pattern).search(response)
    return None if found is None or found.group(1) is None else found.group(1).strip()


def in_form(response: str, pattern: str = DEFAULT_ANSWER_PATTERN) -> bool:
    """Whether a response states a final answer in the expected form, right or wrong."""
    return final_answer(response, pattern) is not None


def lenient_answer(response: str) -> str | None:
    """The lenient reading, a diagnostic only: the last "answer is N", else the last number, else None."""
    found = _LENIENT_ANSWER.findall(response)
    if found:
        return str(int(found[-1]))
    numbers = _NUMBER.findall(response)
    return str(int(numbers[-1])) if numbers else None


def same_answer(predicted: str | None, answer: Any) -> bool:
    """Whether a predicted answer equals a reference: as integers when both parse as one ("012" is 12),
    else as stripped text; None on either side never matches."""
    if answer is None or predicted is None:
        return False
    reference = str(answer).strip()
    try:
        return int(predicted) == int(reference)
    except ValueError:
        return predicted.strip() == reference


def is_correct(response: str, answer: Any, pattern: str = DEFAULT_ANSWER_PATTERN) -> bool:
    """Whether a response states, in the expected form, a final answer equal to the reference answer.

    Args:
        response: The model's response.
        answer: The reference answer; None never matches.
        pattern: The expected form, a regular expression whose one group is the answer.
    """
    return same_answer(final_answer(response, pattern), answer)


def is_correct_lenient(response: str, answer: Any) -> bool:
    """Whether the lenient reading of a response (`lenient_answer`) equals the reference: a diagnostic."""
    return same_answer(lenient_answer(response), answer)


def verify_rows(rows: Sequence[Record], pattern: str = DEFAULT_ANSWER_PATTERN) -> list[Record]:
    """Copies of `rows` (`response`, `answer`) with `correct` (strict), `lenient_correct` and `in_form`."""
    return [
        {
            **row,
            "correct": is_correct(row["response"], row.get("answer"), pattern),
            "lenient_correct": is_correct_lenient(row["response"], row.get("answer")),
            "in_form": in_form(row["response"], pattern),
        }
        for row in rows
    ]


class VerifierJudge:
    """Scores 1.0 when the response states the reference answer in the expected form, else 0.0.

    Attributes:
        answer_pattern: The expected form (a regular expression whose one group is the answer).
        forward_passes, seconds: Always 0: the verifier runs no model, and reports so like the judges that do.
    """

    name: str = "verifier"
    forward_passes: int = 0
    seconds: float = 0.0

    def __init__(self, answer_pattern: str = DEFAULT_ANSWER_PATTERN) -> None:
        self.answer_pattern = check_answer_pattern(answer_pattern)

    def score(self, rows: Sequence[Record]) -> list[float]:
        """1.0 for each row whose response is correct, 0.0 otherwise (also when the answer is None)."""
        return [1.0 if is_correct(row["response"], row.get("answer"), self.answer_pattern) else 0.0 for row in rows]
