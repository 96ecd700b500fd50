"""The verifier: a response is correct when its final answer equals the reference answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks.arithmetic import extract_answer
from tasks.records import Record


def is_correct(response: str, answer: Any) -> bool:
    """Whether a response's final answer (`extract_answer`) matches a reference answer.

    Both sides are compared as integers when both parse as one ("012" matches "12"), else as stripped text.

    Args:
        response: The model's response.
        answer: The reference answer; None never matches.
    """
    if answer is None:
        return False
    predicted = extract_answer(response)
    if predicted is None:
        return False
    reference = str(answer).strip()
    try:
        return int(predicted) == int(reference)
    except ValueError:
        return predicted.strip() == reference


class VerifierJudge:
    """Scores 1.0 when the response's final number equals the reference answer, else 0.0.

    Attributes:
        forward_passes, seconds: Always 0: the verifier runs no model, and reports so like the judges that do.
    """

    name: str = "verifier"
    forward_passes: int = 0
    seconds: float = 0.0

    def score(self, rows: Sequence[Record]) -> list[float]:
        """1.0 for each row whose response is correct, 0.0 otherwise (also when the answer is None)."""
        return [1.0 if is_correct(row["response"], row.get("answer")) else 0.0 for row in rows]
