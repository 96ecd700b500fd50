"""Unit tests of tasks.judging.label_transfer: the label-aware weighted vote and the comparison prompts."""

from __future__ import annotations

import pytest

from tasks.judging.label_transfer import comparison_prompts, vote


def test_vote_is_the_weighted_mean_of_label_aware_votes() -> None:
    # Against a correct reference P(same)=0.9 votes 0.9; against a wrong one P(same)=0.2 votes 1-0.2=0.8.
    assert vote([0.9, 0.2], [True, False]) == pytest.approx(0.85)
    assert vote([0.9, 0.2], [True, False], (1.0, 3.0)) == pytest.approx((0.9 + 3 * 0.8) / 4)
    assert vote([0.9, 0.2], [True, False], (0.0, 1.0)) == pytest.approx(0.8)
    assert vote([], []) == 0.5


def test_comparison_prompts_share_the_right_prefix() -> None:
    ref = {"prompt": "1+1?", "response": " 2", "correct": True}
    a, b = {"prompt": "2+2?", "response": " 4"}, {"prompt": "3+3?", "response": " 7"}
    template = "Q: {prompt}\nA:"
    (pa, ta), (pb, tb) = (comparison_prompts(t, ref, template, swapped=False) for t in (a, b))
    assert pa == pb and "Q: 1+1?\nA: 2\nThis answer is correct." in pa
    assert ta.startswith("Q: 2+2?\nA: 4") and ta.endswith("Is this answer correct too? Reply yes or no:")
    wrong = {**ref, "correct": False}
    (sa, _), (sb, tail) = (comparison_prompts(a, r, template, swapped=True) for r in (ref, wrong))
    assert sa == sb and "2+2?" in sa and "This answer is wrong." in tail
