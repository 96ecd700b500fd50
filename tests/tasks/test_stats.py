"""Accuracy statistics against hand-computed values: Wilson interval, exact McNemar, paired bootstrap."""

import random

import pytest

from tasks.stats import (
    _wilson,
    clustered_interval,
    clustered_mcnemar,
    holm,
    item_groups,
    mcnemar_exact,
    paired_bootstrap,
    paired_counts,
    wilson_interval,
)


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


def test_grouped_forms_reduce_to_the_item_forms_when_every_item_is_its_own_group() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 40)
        cand = [float(rng.random() < 0.6) for _ in range(n)]
        ref = [float(rng.random() < 0.5) for _ in range(n)]
        counts = paired_counts(cand, ref)
        alone = list(range(n))
        assert clustered_mcnemar(cand, ref, alone) == pytest.approx(mcnemar_exact(counts.b, counts.c), rel=1e-9)
        assert clustered_interval(cand, alone) == pytest.approx(wilson_interval(counts.candidate_right, n))


def test_a_problem_asked_three_times_counts_once() -> None:
    # 12 problems, each asked in three wordings with one verdict per problem: the paired test is the 12-item
    # one (b=2, c=10), not the 36-item one, and the interval is at least as wide as over the 12 problems.
    cand, ref = [1.0] * 10 + [0.0] * 2, [0.0] * 10 + [1.0] * 2
    groups = list(range(12)) * 3
    assert clustered_mcnemar(cand * 3, ref * 3, groups) == pytest.approx(mcnemar_exact(2, 10))
    assert mcnemar_exact(6, 30) < mcnemar_exact(2, 10)
    low, high = clustered_interval(cand * 3, groups)
    alone_low, alone_high = wilson_interval(10, 12)
    assert low <= alone_low and high >= alone_high
    # All right: the groups are the sample (12 problems, not 36 items).
    assert clustered_interval([1.0] * 36, groups) == pytest.approx(wilson_interval(12, 12))


def test_an_accuracy_of_zero_or_one_is_the_end_of_its_interval_exactly() -> None:
    # At p = 0 the K groups are the sample; Wilson's lower end there is 0 in exact arithmetic, and at K = 81 and
    # 90 (seed 5's test and OOD problems) the float sum left 3.5e-18, above the accuracy it bounds.
    for k in (81, 90, 73, 95):
        groups = [i % k for i in range(2 * k + 3)]
        assert clustered_interval([0.0] * len(groups), groups)[0] == 0.0
        assert clustered_interval([1.0] * len(groups), groups)[1] == 1.0
    for right in range(0, 41):
        low, high = _wilson(right / 40, 37.5, 0.95)
        assert low <= right / 40 <= high


def test_one_problem_in_several_wordings_is_one_unit_of_evidence() -> None:
    # A kind of the final report can hold a single problem asked in mixed-verdict wordings: there is no
    # variance between groups to estimate (K / (K - 1) divided by zero), and one problem is one draw.
    low, high = clustered_interval([1.0, 0.0, 1.0, 1.0], ["p"] * 4)
    assert (low, high) == pytest.approx(_wilson(0.75, 1.0, 0.95))
    assert low < 0.75 < high and high - low > wilson_interval(3, 4)[1] - wilson_interval(3, 4)[0]


def test_grouped_mcnemar_counts_opposite_flips_within_a_problem_as_cancelling() -> None:
    # One problem where the candidate gains one wording and loses another: no evidence either way.
    assert clustered_mcnemar([1.0, 0.0], [0.0, 1.0], ["p", "p"]) == 1.0
    assert clustered_mcnemar([1.0, 0.0], [0.0, 1.0], ["p", "q"]) == 1.0
    # Two problems of one gain each against one problem of a double gain: the same sum, fewer coins.
    assert clustered_mcnemar([1.0, 1.0], [0.0, 0.0], ["p", "p"]) == 1.0
    assert clustered_mcnemar([1.0, 1.0], [0.0, 0.0], ["p", "q"]) == pytest.approx(0.5)


def test_grouped_forms_refuse_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        clustered_interval([1.0, 0.0], ["p"])
    with pytest.raises(ValueError, match="equal lengths"):
        clustered_mcnemar([1.0], [0.0, 1.0], ["p"])


def test_item_groups_read_the_problem_else_the_id() -> None:
    rows = [{"id": "a", "problem": "add:3:5"}, {"id": "b", "problem": "add:3:5"}, {"id": "c"}]
    assert item_groups(rows, ["c", "b", "a"]) == ["c", "add:3:5", "add:3:5"]


def test_holm_adjusts_by_rank_keeps_order_and_never_falls() -> None:
    # m = 3: the smallest times 3, the next times 2 (but no smaller than the one before), the largest times 1.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 2 * 0.6 capped at 1; 0.7 may not fall below it
    assert holm([0.02]) == [0.02] and holm([]) == []
