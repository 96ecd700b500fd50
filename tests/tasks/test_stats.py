"""Accuracy statistics against hand-computed values: Wilson interval, exact McNemar, paired bootstrap."""

import pytest

from tasks.stats import mcnemar_exact, paired_bootstrap, paired_counts, wilson_interval


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.5, n = 100: centre 0.5, half-width 1.96 * sqrt(0.0025 + 0.96^2/40000) / 1.0384 = 0.0962
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.40383, abs=1e-5) and high == pytest.approx(0.59617, abs=1e-5)
    # k = 0, n = 10: the lower end is 0 and the upper end is z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.27753.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes=11, total=10"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 6, 2 * 0.5**6),  # 0.03125: all six disagreements favour one side
        (6, 0, 2 * 0.5**6),  # symmetric
        (3, 5, 2 * (1 + 8 + 28 + 56) / 256),  # 2 * P(X <= 3), X ~ Bin(8, 1/2) = 0.7265625
        (4, 4, 1.0),
        (0, 0, 1.0),  # no disagreement: no evidence either way
        (0, 1, 1.0),  # 2 * 0.5 = 1
    ],
)
def test_mcnemar_exact(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_paired_counts_split_the_discordant_items() -> None:
    candidate = [1.0, 1.0, 0.0, 0.0, 1.0]
    reference = [1.0, 0.0, 1.0, 1.0, 1.0]
    counts = paired_counts(candidate, reference)
    assert (counts.items, counts.candidate_right, counts.reference_right) == (5, 3, 4)
    assert (counts.b, counts.c) == (2, 1)  # reference-only right: items 2, 3; candidate-only right: item 1
    with pytest.raises(ValueError, match="equal lengths"):
        paired_counts([1.0], [1.0, 0.0])


def test_paired_bootstrap_brackets_the_observed_difference() -> None:
    # Candidate right on 60 of 100, reference on 50; they disagree on 10 items, all in the candidate's favour.
    candidate = [1.0] * 60 + [0.0] * 40
    reference = [1.0] * 50 + [0.0] * 50
    diff, low, high = paired_bootstrap(candidate, reference, resamples=2_000, seed=1)
    assert diff == pytest.approx(0.10)
    assert 0.0 < low < diff < high < 0.2  # every discordant pair favours the candidate: the interval excludes 0
    assert paired_bootstrap(candidate, reference, resamples=2_000, seed=1) == (diff, low, high)  # seeded
    identical = paired_bootstrap(reference, reference, resamples=200)
    assert identical == (0.0, 0.0, 0.0)
