"""The promotion gate: the margin is measured from the best, paired McNemar refusals, flips, item checks."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.gate import GateDecision, alias_displaces, decide, should_promote
from tasks.stats import paired_credit


def rows(right: set[int], n: int = 100) -> list[dict[str, Any]]:
    """Evaluated validation rows `v0..v{n-1}`, right exactly on the items in `right`."""
    return [{"id": f"v{i}", "score": 1.0 if i in right else 0.0} for i in range(n)]


def test_a_slow_slide_is_refused_once_the_drop_from_the_best_exceeds_the_margin() -> None:
    # Round 0 reaches 0.60; each later round answers one item fewer (0.59, 0.58, 0.57), each within the
    # 0.02 margin of the round before it.
    margin = 0.02
    accuracies = [0.60, 0.59, 0.58, 0.57]
    evaluations = [rows(set(range(round(a * 100)))) for a in accuracies]

    # The old rule, measured from the last promoted policy, accepts every step of the slide.
    last = accuracies[0]
    for accuracy in accuracies[1:]:
        assert should_promote(accuracy, last, margin)
        last = accuracy

    # The gate, measured from the best and compared with the best policy (the champion), stops at 0.57.
    champion, best = evaluations[0], accuracies[0]
    promoted = []
    for evaluation in evaluations[1:]:
        decision = decide(evaluation, champion, best_accuracy=best, margin=margin)
        promoted.append(decision.promoted)
        best = decision.best_after
    assert promoted == [True, True, False]
    assert best == 0.60  # the bar never moved down
    assert decision.reason.startswith("refused: 0.570 vs champion 0.600 on 100 validation items (b=3, c=0,")
    assert "0.570 is more than 0.02 below the best 0.600" in decision.reason


def test_promoted_decision_record_and_reason() -> None:
    champion = rows(set(range(58)))  # 0.58
    candidate = rows(set(range(3, 61)) | {99})  # 0.59: loses items 0-2, gains 58-60 and 99
    decision = decide(candidate, champion, best_accuracy=0.58, margin=0.0, alpha=0.05)
    assert decision == GateDecision(
        promoted=True,
        reason=decision.reason,
        items=100,
        candidate_accuracy=0.59,
        champion_accuracy=0.58,
        best_accuracy=0.58,
        best_after=0.59,
        margin=0.0,
        p_value=pytest.approx(1.0),  # b=3, c=4: 2 * P(X <= 3), X ~ Bin(7, 1/2) = 2 * 64/128, capped at 1
        b=3,
        c=4,
        flip_rate=0.03,
    )
    assert decision.reason == (
        "promoted: 0.590 vs champion 0.580 on 100 validation items (b=3, c=4, McNemar p=1); a new best (was 0.580)"
    )
    assert decision.metrics()["gate/promoted"] == 1.0 and decision.metrics()["gate/b"] == 3.0
    with pytest.raises(AttributeError):
        decision.promoted = False  # type: ignore[misc]


def test_significantly_worse_than_the_champion_is_refused_even_within_the_margin() -> None:
    champion = rows(set(range(60)))  # 0.60
    candidate = rows(set(range(8, 60)))  # 0.52: loses 8 items, gains none -> p = 2 * 0.5**8 = 0.0078
    within = decide(candidate, champion, best_accuracy=0.60, margin=0.10)
    assert within.promoted and within.p_value == pytest.approx(2 * 0.5**8)
    refused = decide(candidate, champion, best_accuracy=0.60, margin=0.10, alpha=0.05)
    assert not refused.promoted
    assert "significantly worse than the champion (p=0.0078 < 0.05)" in refused.reason
    # A candidate better than the champion is never refused by the test, however small p is.
    better = decide(champion, candidate, best_accuracy=0.52, margin=0.0, alpha=0.05)
    assert better.promoted and better.p_value < 0.05


def test_the_test_counts_a_problem_asked_in_several_wordings_once() -> None:
    # The 8 lost items are 2 problems asked 4 times each: 2 coins, not 8 (p = 0.5, not 0.0078).
    champion = [{**row, "problem": f"p{i // 4}" if i < 8 else f"q{i}"} for i, row in enumerate(rows(set(range(60))))]
    candidate = [{**row, "problem": champion[i]["problem"]} for i, row in enumerate(rows(set(range(8, 60))))]
    grouped = decide(candidate, champion, best_accuracy=0.60, margin=0.10, alpha=0.05)
    assert grouped.promoted and (grouped.b, grouped.c) == (8, 0) and grouped.p_value == pytest.approx(0.5)


def test_best_accuracy_cannot_be_set_below_the_champion() -> None:
    champion = rows(set(range(60)))
    candidate = rows(set(range(55)))
    decision = decide(candidate, champion, best_accuracy=0.40, margin=0.02)
    assert decision.best_accuracy == 0.60 and not decision.promoted


def test_flip_gate_counts_items_the_champion_had_right() -> None:
    champion = rows(set(range(50)))
    candidate = rows(set(range(10, 70)))  # 0.60, a new best, but 10 of 100 items flipped right -> wrong
    assert decide(candidate, champion, best_accuracy=0.5, margin=0.0, max_flip_rate=0.10).promoted
    refused = decide(candidate, champion, best_accuracy=0.5, margin=0.0, max_flip_rate=0.09)
    assert not refused.promoted and refused.flip_rate == 0.10
    assert refused.reason.endswith("negative-flip rate 0.100 above 0.09")


def test_items_are_paired_by_id_and_mismatches_are_named() -> None:
    champion = [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.0}]
    candidate = [{"id": "b", "score": 1.0}, {"id": "a", "score": 1.0}]
    assert paired_credit(candidate, champion) == (["a", "b"], [1.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"1 only in the candidate's \(c\), 1 only in the champion's \(b\)"):
        decide([{"id": "a", "score": 1}, {"id": "c", "score": 1}], champion, best_accuracy=0.5, margin=0.0)
    with pytest.raises(ValueError, match="candidate evaluation, row 2: id 'a' appears twice"):
        paired_credit([{"id": "a", "score": 1}, {"id": "a", "score": 0}], champion)
    with pytest.raises(ValueError, match="champion evaluation, row 1: no 'score' field"):
        paired_credit(candidate, [{"id": "a"}])
    with pytest.raises(ValueError, match="at least one validation item"):
        decide([], [], best_accuracy=0.5, margin=0.0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"best_accuracy": float("nan")}, "best_accuracy=nan"),
        ({"margin": 1.5}, "margin=1.5"),
        ({"alpha": 0.0}, "alpha=0.0"),
        ({"max_flip_rate": -0.1}, "max_flip_rate=-0.1"),
    ],
)
def test_settings_out_of_range_are_refused(setting: dict[str, float], message: str) -> None:
    kwargs: dict[str, Any] = {"best_accuracy": 0.5, "margin": 0.0, **setting}
    with pytest.raises(ValueError, match=message):
        decide(rows({1}), rows({1}), **kwargs)


def test_alias_moves_only_on_the_same_validation_set_and_never_down() -> None:
    assert alias_displaces(0.61, "sha-v", 0.60, "sha-v")
    assert alias_displaces(0.60, "sha-v", 0.60, "sha-v")  # a tie goes to the newer version
    assert not alias_displaces(0.59, "sha-v", 0.60, "sha-v")  # no margin: the alias never slides
    assert not alias_displaces(0.99, "sha-other", 0.60, "sha-v")  # another set cannot be compared
    assert not alias_displaces(0.99, None, 0.60, None)  # nor a version without a recorded set
    # In registration order the alias ends on the best of the comparable versions.
    versions = [(0.50, "sha-v"), (0.58, "sha-v"), (0.57, "sha-v"), (0.90, "sha-w"), (0.58, "sha-v")]
    champion = 0
    for index, version in enumerate(versions[1:], start=1):
        if alias_displaces(*version, *versions[champion]):
            champion = index
    assert champion == 4  # 0.58 first reached by version 1, tied by the newer version 4; 0.90 is another set


@pytest.mark.parametrize(
    ("flip_rate", "max_flip_rate", "expected"),
    [(None, 0.1, True), (0.1, None, True), (0.1, 0.1, True), (0.11, 0.1, False), (float("nan"), 0.1, True)],
)
def test_scalar_rule_flip_gate(flip_rate: float | None, max_flip_rate: float | None, expected: bool) -> None:
    assert should_promote(0.6, 0.5, 0.0, flip_rate, max_flip_rate) is expected
    assert should_promote(0.4, 0.5, 0.0, flip_rate, max_flip_rate) is False
