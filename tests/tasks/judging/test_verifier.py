"""Unit tests of tasks.judging.verifier: which responses the verifier counts as correct."""

from __future__ import annotations

import pytest

from tasks.judging.base import Judge
from tasks.judging.verifier import VerifierJudge, is_correct


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("The answer is 12.", "12", True),
        (" 5 + 7 = 12. The answer is 012", "12", True),
        ("answer is 012", "12", True),
        ("The answer is 13.", "12", False),
        ("I do not know.", "12", False),
        ("The answer is 12.", None, False),
        ("The answer is 3. No wait, the answer is 12", "12", True),
        ("The answer is 12. No wait, the answer is 3", "12", False),
        ("12 apples, so the answer is 5", "12", False),  # "answer is" beats a later or earlier bare number
        ("7 + 5 = 12", "12", True),  # no "answer is": the last number
        ("The answer is -4", " -4 ", True),
        ("The answer is 12", 12, True),  # a non-string reference is compared by value
        ("The answer is 12", "twelve", False),  # not an integer: compared as text
    ],
)
def test_verifier(response: str, answer: object, expected: bool) -> None:
    assert is_correct(response, answer) is expected
    assert VerifierJudge().score([{"prompt": "q", "response": response, "answer": answer}]) == [float(expected)]


def test_verifier_is_a_judge() -> None:
    judge: Judge = VerifierJudge()
    assert judge.name == "verifier"
