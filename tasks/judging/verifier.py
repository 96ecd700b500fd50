"""The verifier: a response is correct when it states one final answer, in the expected form, equal to the reference.

Strict by default: credit needs the response to end with the answer in the stated form ("The answer is N.",
trailing whitespace allowed, said once). An echo of the question whose last operand happens to be the
answer, two candidate answers ("The answer is 7 or 8."), or an expression without its result (" 8 - 4")
get none. The old lenient reading (the last "answer is N", else the last number) is kept as a diagnostic:
it tells how much of a score is the policy learning the format rather than the task.

`shows_work` is the stricter test a training row passes under `judge.require_work`: the response states its
computations ("3 + 4 = 7", chains such as "3 + 4 = 7, 7 * 2 = 14"), every one of them is right, and the last
result is the final answer. A bare "The answer is 7." never passes, even when 7 is right: a policy trained on
such rows learns to guess (issue 13: 185 of 200 held-out responses became bare guesses).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

from configs.schema import DEFAULT_ANSWER_PATTERN, check_answer_pattern
from tasks.records import Record

_LENIENT_ANSWER = re.compile(r"answer is\s*(-?\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+")
# A stated computation: terms joined by "=", a term being numbers joined by + - * x × / (spaces allowed);
# "3 + 4 = 7" and "3 * 4 = 12 = 6 + 6" are chains, "7" alone or "x = 7" are not.
_TERM = r"\d+(?:\.\d+)?(?:\s*[-+*x×/]\s*\d+(?:\.\d+)?)*"
_CHAIN = re.compile(rf"(?<![\w.]){_TERM}(?:\s*=\s*{_TERM})+")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[-+*x×/]")


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


def _evaluate(term: str) -> Fraction | None:
    """The exact value of "a op b op c ..." with * x × / before + -; None for a division by zero."""
    tokens = _TOKEN.findall(term)
    values, ops = [Fraction(tokens[0])], []
    for op, number in zip(tokens[1::2], tokens[2::2], strict=True):
        value = Fraction(number)
        if op in "*x×/":
            if op == "/" and value == 0:
                return None
            values[-1] = values[-1] * value if op != "/" else values[-1] / value
        else:
            values.append(value)
            ops.append(op)
    total = values[0]
    for op, value in zip(ops, values[1:], strict=True):
        total = total + value if op == "+" else total - value
    return total


def computations(response: str) -> list[tuple[str, bool, Fraction | None]]:
    """The computations a response states, in order: (text, whether every "=" in it holds, its last value).

    A chain counts only when at least one of its terms has an operator ("7 = 7" states nothing). A chain of
    three or more terms that opens with a bare number drops it: in "3 plus 1 = 3 + 1 = 4" the "1" ends a
    phrase in words, and the computation stated is "3 + 1 = 4".
    """
    found = []
    for match in _CHAIN.finditer(response):
        terms = [term.strip() for term in match.group(0).split("=")]
        if len(terms) > 2 and not _TOKEN.findall(terms[0])[1:]:
            terms = terms[1:]
        if not any(_TOKEN.findall(term)[1:] for term in terms):
            continue
        values = [_evaluate(term) for term in terms]
        holds = None not in values and len(set(values)) == 1
        found.append((" = ".join(terms), holds, values[-1]))
    return found


def shows_work(response: str, pattern: str = DEFAULT_ANSWER_PATTERN) -> bool:
    """Whether a response shows right working for its own final answer (`judge.require_work`).

    It must state at least one computation, every stated computation must hold, and the last one's result
    must equal the final answer in the expected form. Whether that answer is the reference is `is_correct`'s
    question; a training row needs both.

    Args:
        response: The model's response.
        pattern: The expected form of the final answer (a regular expression whose one group is the answer).
    """
    stated = final_answer(response, pattern)
    steps = computations(response)
    if stated is None or not steps or not all(holds for _, holds, _ in steps):
        return False
    try:
        return steps[-1][2] == Fraction(stated)
    except ValueError:
        return False


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
