"""Unit tests of tasks.judging.verifier: strict credit for one final answer in the stated form, the lenient
diagnostic beside it, and the working a training row must show (judge.require_work)."""

from __future__ import annotations

import pytest

from tasks.judging.base import Judge
from tasks.judging.verifier import (
    VerifierJudge,
    computations,
    final_answer,
    in_form,
    is_correct,
    is_correct_lenient,
    lenient_answer,
    shows_work,
    verify_rows,
)
from tasks.records import Record


@pytest.mark.parametrize(
    ("response", "answer", "strict", "lenient"),
    [
        ("The answer is 12.", "12", True, True),
        (" 5 + 7 = 12. The answer is 12.", "12", True, True),
        (" 5 + 7 = 12. The answer is 12.  \n ", "12", True, True),  # trailing whitespace is allowed
        (" 5 + 7 = 12. The answer is 012.", "12", True, True),  # compared as integers
        (" so the answer is 12.", "12", True, True),
        ("The answer is -4.", " -4 ", True, True),
        ("The answer is 12.", 12, True, True),  # a non-string reference is compared by value
        ("The answer is 13.", "12", False, False),
        ("The answer is 12.", None, False, False),
        ("I do not know.", "12", False, False),
        # gaming cases: no credit under the strict check, though the lenient reading gives it
        ("Tom has 5 apples and gets 12", "12", False, True),  # an echo of the question ending on the answer
        ("The answer is 7 or 8.", "7", False, True),  # two candidate answers
        ("The answer is 7 or 8.", "8", False, False),
        ("The answer is 8. The answer is 7.", "7", False, True),  # two stated answers, the last one right
        ("The answer is 7. The answer is 8.", "7", False, False),
        (" 12 - 4", "8", False, False),  # an expression without its result
        (" 4 + 4", "4", False, True),  # ... whose last operand is the answer
        ("7 + 5 = 12", "12", False, True),  # right working, not stated in the form
        ("The answer is 12", "12", False, True),  # no closing period: not the stated form
        ("The answer is 12. Next question: what is 3 plus 4?", "12", False, True),  # not at the end
        ("The answer is 4.5.", "4", False, True),
    ],
)
def test_verifier(response: str, answer: object, strict: bool, lenient: bool) -> None:
    assert is_correct(response, answer) is strict
    assert is_correct_lenient(response, answer) is lenient
    assert VerifierJudge().score([{"prompt": "q", "response": response, "answer": answer}]) == [float(strict)]


def test_final_answer_and_form() -> None:
    assert final_answer(" 3 + 4 = 7. The answer is 7.") == "7"
    assert final_answer("The answer is 7 or 8.") is None
    assert in_form("The answer is 9.") and not in_form("9")
    assert lenient_answer("so 12") == "12" and lenient_answer("no number") is None
    assert lenient_answer("answer is -3, then 5") == "-3"  # "answer is" beats a later bare number


def test_a_configured_pattern_replaces_the_default() -> None:
    pattern = r"#### (-?\d+)\s*$"  # GSM8K's final-answer marker
    judge = VerifierJudge(pattern)
    rows = [
        {"response": "3 + 4 = 7\n#### 7", "answer": "7"},
        {"response": "The answer is 7.", "answer": "7"},
        {"response": "#### 7\nor maybe #### 8", "answer": "7"},
    ]
    assert judge.score(rows) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="exactly one group"):
        VerifierJudge(r"(\d+) (\d+)")


def test_verify_rows_keeps_strict_lenient_and_form_side_by_side() -> None:
    rows: list[Record] = [
        {"response": "The answer is 5.", "answer": "5"},
        {"response": "The answer is 6.", "answer": "5"},
        {"response": " 2 + 3 = 5", "answer": "5"},
        {"response": "The answer is 5.", "answer": None},
    ]
    flags = [(r["correct"], r["lenient_correct"], r["in_form"]) for r in verify_rows(rows)]
    assert flags == [(True, True, True), (False, False, True), (False, True, False), (False, False, True)]


def test_verifier_is_a_judge() -> None:
    judge: Judge = VerifierJudge()
    assert judge.name == "verifier"


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        (" 3 + 4 = 7. The answer is 7.", True),
        (" 3 + 4 = 7, 7 * 2 = 14. The answer is 14.", True),  # a chain: every step right, the last is the answer
        (" 6 x 7 = 42. The answer is 42.", True),
        (" 5 + 3 - 2 = 6. The answer is 6.", True),  # one expression, two operations
        (" 2.5 * 4 = 10. The answer is 10.", True),
        (" 3 plus 1 = 3 + 1 = 4. The answer is 4.", True),  # words before the computation
        (" The answer is 7.", False),  # a bare guess, even with the right number
        (" 7. The answer is 7.", False),
        (" 3 + 4 = 8. The answer is 8.", False),  # a wrong step
        (" 3 + 4 = 7, 7 * 2 = 15. 15 - 1 = 14. The answer is 14.", False),  # a wrong intermediate step
        (" 5 + 3 = 8 - 2 = 6. The answer is 6.", False),  # a chain whose "=" does not hold (8 is not 6)
        (" 3 + 4 = 7. The answer is 8.", False),  # the last result is not the answer
        (" 3 + 4 = 7, 7 * 2 = 14. The answer is 7.", False),  # the answer is not the last result
        (" 8 - 4. The answer is 4.", False),  # an expression without its result states nothing
        (" 7 = 7. The answer is 7.", False),
        (" 12 / 0 = 3. The answer is 3.", False),
        (" 3 + 4 = 7.", False),  # no final answer in the expected form
    ],
)
def test_shows_work(response: str, kept: bool) -> None:
    assert shows_work(response) is kept


def test_computations_are_read_in_order_with_their_truth() -> None:
    steps = computations(" Tom has 4 * 3 = 12 apples, then 12 + 5 = 17, so 17 - 2 = 16. The answer is 16.")
    assert steps == [("4 * 3 = 12", True, 12), ("12 + 5 = 17", True, 17), ("17 - 2 = 16", False, 16)]
    assert computations(" 2 + 3 * 4 = 14") == [("2 + 3 * 4 = 14", True, 14)]  # * before +


@pytest.mark.parametrize(
    "response",
    [
        "The Answer is 8. The answer is 7.",  # the "said once" check ignores case
        "ANSWER IS 8. The answer is 7.",
        "Answer: 8. The answer is 7.",  # "Answer:" states an answer too
        "answer:8\nThe answer is 7.",
        "The answer  is 8. The answer is 7.",  # however many spaces
        "The answer is ７.",  # full-width digit: ASCII digits only
        "The answer is ٧.",  # Arabic-Indic digit
        "The answer is 7\u0663.",  # an ASCII 7 followed by an Arabic-Indic 3
    ],
)
def test_a_second_answer_or_a_digit_of_another_script_earns_nothing(response: str) -> None:
    assert not is_correct(response, "7")
    assert VerifierJudge().score([{"prompt": "q", "response": response, "answer": "7"}]) == [0.0]


def test_only_ascii_digits_are_compared_as_integers() -> None:
    assert is_correct("The answer is 07.", "7")
    assert not is_correct("#### ٧", "7", r"#### (\d+)")  # a configured `\d` pattern finds "٧", which is no 7
    assert not is_correct("The answer is 7.", "٧")


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        # typographic and word operators are read, so a wrong step written with them fails the row
        (" 50 − 8 = 41. 40 + 2 = 42. The answer is 42.", False),  # U+2212 minus
        (" 50 − 8 = 42. The answer is 42.", True),
        (" 84 ÷ 2 = 41. 40 + 2 = 42. The answer is 42.", False),
        (" 84 ÷ 2 = 42. The answer is 42.", True),
        (" 6 · 7 = 43. 40 + 2 = 42. The answer is 42.", False),
        (" 6 · 7 = 42. The answer is 42.", True),
        (" 6 × 7 = 43. 40 + 2 = 42. The answer is 42.", False),
        (" 6 × 7 = 42. The answer is 42.", True),
        (" 12 plus 30 is 52, so 40 + 2 = 42. The answer is 42.", False),  # a wrong step in words
        (" 12 plus 30 is 42. The answer is 42.", True),
        (" 6 times 7 equals 42, 42 divided by 2 = 21. The answer is 21.", True),
        # negative numbers and results
        (" 3 - 5 = -3. 44 - 2 = 42. The answer is 42.", False),
        (" 3 - 5 = -2. 44 - 2 = 42. The answer is 42.", True),
        (" 16 - 18 = -2. The answer is -2.", True),
        (" 5 * -2 = -10. The answer is -10.", True),
        # percentages
        (" 20% of 50 = 12. 30 + 12 = 42. The answer is 42.", False),
        (" 20% of 50 = 10. 32 + 10 = 42. The answer is 42.", True),
        (" 20 % of 50 = 12. 30 + 12 = 42. The answer is 42.", False),
        # thousands separators, and list commas that are none
        (" 1,000 + 5 = 1,005. The answer is 1005.", True),
        (" 12,345 + 1 = 12,346. The answer is 12346.", True),
        (" 1,000 + 5 = 1,006. The answer is 1006.", False),
        (" Of 3, 4 and 5: 3 + 4 + 5 = 12. The answer is 12.", True),
        (" $12 + $30 = $42. The answer is 42.", True),
        # parentheses
        (" (2 + 5) * 6 = 42. The answer is 42.", True),
        (" 2 * (3 + 4) = 15. The answer is 15.", False),
        (" 2 + 5 * 6 = 42. The answer is 42.", False),
        (" (so 3 + 4 = 7) The answer is 7.", True),
        # a computation the parser cannot read fails the row; prose without one does not
        (" 2^3 = 8. The answer is 8.", False),
        (" 2^3 + 1 = 4. The answer is 4.", False),  # not read as "3 + 1 = 4"
        (" twelve plus 30 = 42. The answer is 42.", False),  # not read as "30 = 42"
        (" 3 + 4\n= 8. 4 + 4 = 8. The answer is 8.", False),
        (" What is 3 + 4 = ? 3 + 4 = 7. The answer is 7.", True),  # "= ?" asks, it states nothing
        (" Tom is 7 years old; x = 7 and 7 + 3 = 10. The answer is 10.", True),
        ("- 3 + 4 = 7\n- 7 * 2 = 14. The answer is 14.", True),  # a list item's "- " is no minus
    ],
)
def test_shows_work_reads_every_stated_computation(response: str, kept: bool) -> None:
    assert shows_work(response) is kept


def test_computations_keep_their_text_and_mark_what_they_cannot_read() -> None:
    assert computations(" 20 % of 50 = 12, 1,000 − 8 = 992. (2 + 5) * 6 = 42") == [
        ("20 % of 50 = 12", False, 12),
        ("1,000 − 8 = 992", True, 992),
        ("(2 + 5) * 6 = 42", True, 42),
    ]
    assert computations(" 2^3 = 8") == [("2^3 = 8", False, None)]
    assert computations("We had 3 apples. Tom has 3 = 3 + 0 = 3.") == [("3 + 0 = 3", True, 3)]
