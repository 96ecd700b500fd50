"""The verifier: a response is correct when it states one final answer, in the expected form, equal to the reference.

Strict by default: credit needs the response to end with the answer in the stated form ("The answer is N.",
N in ASCII digits, trailing whitespace allowed, an answer said once: a second one in any case or as "Answer:"
counts). An echo of the question whose last operand happens to be the answer, two candidate answers ("The
answer is 7 or 8."), or an expression without its result (" 8 - 4") get none. The old lenient reading (the
last "answer is N", else the last number) is kept as a diagnostic: it tells how much of a score is the policy
learning the format rather than the task.

`shows_work` is the stricter test a training row passes under `judge.require_work`: the response states its
computations ("3 + 4 = 7", chains such as "3 + 4 = 7, 7 * 2 = 14"), every one of them is right, and the last
result is the final answer. Working is read with typographic signs (− × ÷ ·) and words ("12 plus 30 is 42"),
negative numbers, "1,000", "20% of", parentheses; a computation it cannot read ("2^3 = 8") fails the row rather
than pass a wrong step unread. A bare "The answer is 7." never passes, even when 7 is right: a policy trained on
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

# Digits are ASCII only: `\d` and int() also read "７" or "٧", which would credit an answer in another script.
_LENIENT_ANSWER = re.compile(r"answer is\s*(-?[0-9]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?[0-9]+")
_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
# A number in working: "12", "2.5", "$12", "1,000" and "12,345" (a thousands separator is a comma followed by
# exactly three digits inside a number; the comma of a list, "3, 4", is not one).
_NUM = r"\$?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?"
# Operators as working writes them: ASCII, the typographic signs and words. "of" multiplies only after a
# percent ("20% of 50"), where the chain pattern below admits it.
_OPERATORS = {
    **dict.fromkeys(["+", "plus"], "+"),
    **dict.fromkeys(["-", "−", "–", "minus"], "-"),
    **dict.fromkeys(["*", "x", "×", "·", "⋅", "times", "multiplied by", "of"], "*"),
    **dict.fromkeys(["/", "÷", "divided by"], "/"),
}
_SIGNS = "-+*/×÷·⋅−–"
_WORDS = r"\b(?:plus|minus|times|multiplied\s+by|divided\s+by)\b"
_SP = r"[^\S\n]*"  # spaces within a line: a computation never runs on into the next line's "- " list item
# An operand: a number, maybe a percent, maybe in parentheses, with a minus sign written against it ("-2";
# the "- " of a list item is no sign).
_OPERAND = rf"(?:\({_SP})*[-−]?{_NUM}(?:{_SP}%)?(?:{_SP}\))*"
# A stated computation: terms joined by "=" (or "is", "equals"), a term being operands joined by operators.
# "3 + 4 = 7", "(2 + 5) * 6 = 42", "12 plus 30 is 42" and "3 * 4 = 12 = 6 + 6" are chains, "7" or "x = 7" are
# not. A chain starts neither inside a word nor inside a number (never at the "000" of "1,000").
_TERM = rf"{_OPERAND}(?:(?:{_SP}(?:[{_SIGNS}x]|{_WORDS})|(?<=%){_SP}of\b){_SP}{_OPERAND})*"
_EQUALS = re.compile(rf"{_SP}(?:=|\b(?:is|equals)\b){_SP}")
_CHAIN = re.compile(rf"(?<![\w.$])(?<![0-9],){_TERM}(?:{_EQUALS.pattern}{_TERM})+")
_PIECE = re.compile(rf"{_NUM}(?:\s*%)?|multiplied\s+by|divided\s+by|plus|minus|times|of|[{_SIGNS}x()]")
_BARE = re.compile(rf"[(\s]*[-−]?{_NUM}[)\s]*")
_SIGNED = re.compile(rf"-?{_NUM}")
# An operator-like sign the chains did not read: "2^3", "20 % of" (a percent apart from its number) or an
# operator the parser knows left of an "=" or of a chain ("twelve plus 30 = 42" would otherwise read "30 = 42").
_OPERATOR_LIKE = re.compile(rf"[{_SIGNS}%^]|{_WORDS}")
_AFTER_OPERATOR = re.compile(rf"(?:{_OPERATOR_LIKE.pattern})\s*$")
# Where the clause around an "=" ends: a line, a sentence, a ", ", another "=".
_CLAUSE_END = re.compile(r"\n|[.;:!?](?=\s|$)|,(?=\s)|=")


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
    """Whether a predicted answer equals a reference: as integers when both are ASCII digits ("012" is 12; "٧" is
    no 7), else as stripped text; None on either side never matches."""
    if answer is None or predicted is None:
        return False
    reference = str(answer).strip()
    if _INTEGER.fullmatch(predicted) and _INTEGER.fullmatch(reference):  # ASCII only, unlike int() alone
        return int(predicted) == int(reference)
    return predicted.strip() == reference


def stated_answer(answer: Any) -> str:
    """A final answer stated in the canonical form, " The answer is <answer>.", which the default
    `judge.answer_pattern` reads: the target of a row without a worked solution, and the form preflight tries a
    scored answer in."""
    return f" The answer is {answer}."


def is_correct(response: str, answer: Any, pattern: str = DEFAULT_ANSWER_PATTERN) -> bool:
    """Whether a response states, in the expected form, a final answer equal to the reference answer.

    Args:
        response: The model's response.
        answer: The reference answer; None never matches.
        pattern: The expected form, a regular expression whose one group is the answer.
    """
    return same_answer(final_answer(response, pattern), answer)


def _number(text: str) -> Fraction:
    """The value of a number as working writes it: "1,000", "2.5", "$3", "20%" (0.2)."""
    digits = text.rstrip("% ").lstrip("$").replace(",", "")
    return Fraction(digits) / 100 if text.endswith("%") else Fraction(digits)


def _sum(tokens: list[str], at: int) -> tuple[Fraction, int]:
    value, at = _product(tokens, at)
    while at < len(tokens) and tokens[at] in ("+", "-"):
        right, after = _product(tokens, at + 1)
        value, at = (value + right if tokens[at] == "+" else value - right), after
    return value, at


def _product(tokens: list[str], at: int) -> tuple[Fraction, int]:
    value, at = _factor(tokens, at)
    while at < len(tokens) and tokens[at] in ("*", "/"):
        right, after = _factor(tokens, at + 1)
        value, at = (value * right if tokens[at] == "*" else value / right), after  # ZeroDivisionError on 0
    return value, at


def _factor(tokens: list[str], at: int) -> tuple[Fraction, int]:
    if at >= len(tokens):
        raise ValueError("an operator without its operand")
    if tokens[at] == "-":
        value, at = _factor(tokens, at + 1)
        return -value, at
    if tokens[at] == "(":
        value, at = _sum(tokens, at + 1)
        if at >= len(tokens) or tokens[at] != ")":
            raise ValueError("an unclosed parenthesis")
        return value, at + 1
    return _number(tokens[at]), at + 1  # ValueError when it is an operator or ")"


def _evaluate(term: str) -> Fraction | None:
    """The exact value of a term, read by a small recursive-descent parser (never `eval`): numbers, a minus sign,
    parentheses, * x × · ÷ / before + - and their words; None when it does not parse or divides by zero."""
    tokens = [_OPERATORS.get(" ".join(piece.split()), piece) for piece in _PIECE.findall(term)]
    try:
        value, at = _sum(tokens, 0)
    except (ValueError, ZeroDivisionError, RecursionError):  # RecursionError: thousands of nested parentheses
        return None
    return value if at == len(tokens) else None


def _balanced(term: str) -> str:
    """A term without the unmatched parenthesis that opens or closes it: in "(so 3 + 4 = 7)", "3 + 4" and "7"."""
    term = term.strip()
    while term.startswith("(") and term.count("(") > term.count(")"):
        term = term[1:].lstrip()
    while term.endswith(")") and term.count(")") > term.count("("):
        term = term[:-1].rstrip()
    return term


def _after_operator(response: str, start: int) -> bool:
    """Whether the text just before `start` ends with an operator-like sign that is not a list item's "- "."""
    line_start = response.rfind("\n", 0, start) + 1
    tail_start = max(line_start, start - 32)  # the longest sign, "multiplied by", with room for spaces
    sign = _AFTER_OPERATOR.search(response, tail_start, start)
    return sign is not None and response[line_start : sign.start()].strip() != ""


def computations(response: str) -> list[tuple[str, bool, Fraction | None]]:
    """The computations a response states, in order: (text, whether every "=" in it holds, its last value).

    A chain counts only when at least one of its terms has an operator ("7 = 7" states nothing). A chain of
    three or more terms that opens with a bare number drops it: in "Tom has 3 = 3 + 1 = 4" the "3" ends a
    phrase in words, and the computation stated is "3 + 1 = 4".

    A computation the parser cannot read is stated all the same, and does not hold (value None): an "=" left
    of which its clause has an operator-like sign and a digit ("2^3 = 8", "20 % of 50 = 10"), or a chain
    right after such a sign ("twelve plus 30 = 42"). Refusing a row that shows working the verifier cannot
    check is the safe side: `shows_work` must never pass a wrong step it did not read.
    """
    found: list[tuple[int, str, bool, Fraction | None]] = []
    read: set[int] = set()  # where the "=" of the computations read are
    for match in _CHAIN.finditer(response):
        terms = [_balanced(term) for term in _EQUALS.split(match.group(0))]
        if len(terms) > 2 and _BARE.fullmatch(terms[0]):
            terms = terms[1:]
        if all(_BARE.fullmatch(term) for term in terms):
            continue
        values = [_evaluate(term) for term in terms]
        holds = None not in values and len(set(values)) == 1 and not _after_operator(response, match.start())
        found.append((match.start(), " = ".join(terms), holds, values[-1]))
        read.update(match.start() + at for at, char in enumerate(match.group(0)) if char == "=")
    marks = [mark.start() for mark in _CLAUSE_END.finditer(response)]  # each one character
    for index, at in enumerate(marks):
        if response[at] != "=" or at in read:
            continue
        first = index - 1  # the clause left of the "=", from the line above when its own line has none ("\n= 8")
        while first >= 0 and response[marks[first]] == "\n" and not response[marks[first] + 1 : at].strip():
            first -= 1
        left = response[marks[first] + 1 if first >= 0 else 0 : at]
        right = response[at + 1 : marks[index + 1] if index + 1 < len(marks) else len(response)]
        # A digit and an operator-like sign left of an "=" state a computation; "3 + 4 = ?" only asks one.
        if re.search("[0-9]", left) and _OPERATOR_LIKE.search(left) and not response[at + 1 :].lstrip().startswith("?"):
            found.append((at - len(left), " = ".join(" ".join(part.split()) for part in (left, right)), False, None))
    return [(text, holds, value) for _, text, holds, value in sorted(found, key=lambda step: step[0])]


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
    return _SIGNED.fullmatch(stated) is not None and steps[-1][2] == _evaluate(stated)


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
