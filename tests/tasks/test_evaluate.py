"""Held-out scoring helpers: the Wilson interval and the promotion rule, against hand-computed values."""

import pytest

from tasks.evaluate import should_promote, wilson_interval


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.5, n = 100: centre 0.5, half-width 1.96 * sqrt(0.0025 + 0.96^2/40000) / 1.0384 = 0.0951
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("candidate", "incumbent", "margin", "expected"),
    [(0.50, 0.50, 0.0, True), (0.49, 0.50, 0.0, False), (0.49, 0.50, 0.02, True), (0.47, 0.50, 0.02, False)],
)
def test_promotion_gate(candidate: float, incumbent: float, margin: float, expected: bool) -> None:
    assert should_promote(candidate, incumbent, margin) is expected
