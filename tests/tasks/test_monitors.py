"""Unit tests for the stability monitors: diversity, similarity, negative flips, and the flip gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.gate import should_promote
from tasks.monitors import distinct_n, generation_monitors, mean_pairwise_similarity, negative_flips


def test_negative_flips_count_items_right_before_and_wrong_now() -> None:
    previous = [{"id": i, "score": s} for i, s in zip("abcdef", [1, 1, 1, 0, 0, 1], strict=True)]
    current = [{"id": i, "score": s} for i, s in zip("abcdeg", [1, 0, 0, 1, 0, 0], strict=True)]
    flips = negative_flips(previous, current)
    # Common items a-e: b and c went right -> wrong, d went wrong -> right; f and g are not in both.
    assert flips == {
        "negative_flips": 2.0,
        "positive_flips": 1.0,
        "negative_flip_rate": 2 / 5,
        "positive_flip_rate": 1 / 5,
        "items": 5.0,
    }


def test_negative_flips_without_common_items_are_nan_rates() -> None:
    flips = negative_flips([{"id": "a", "score": 1.0}], [{"id": "b", "score": 0.0}])
    assert flips["items"] == 0.0 and math.isnan(flips["negative_flip_rate"])


def test_distinct_n_is_unique_over_all_ngrams() -> None:
    texts = ["a b c", "a b d"]  # bigrams: ab, bc, ab, bd -> 3 distinct of 4
    assert distinct_n(texts, 2) == 0.75
    assert distinct_n(texts, 1) == 4 / 6
    assert math.isnan(distinct_n(["a"], 2))


def test_mean_pairwise_similarity_of_unit_vectors() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # pairs: 0, 1, 0
    assert mean_pairwise_similarity(vectors) == pytest.approx(1 / 3)
    assert math.isnan(mean_pairwise_similarity(vectors[:1]))


def test_generation_monitors_report_length_and_scores() -> None:
    rows = [{"response": "a b", "score": 1.0}, {"response": "a b c d", "score": 0.0}]
    metrics = generation_monitors(rows, 2)
    assert metrics["response_words"] == 3.0
    assert metrics["score_mean"] == 0.5 and metrics["score_std"] == 0.5
    assert metrics["score_min"] == 0.0 and metrics["score_max"] == 1.0


def test_generation_monitors_leave_out_cascade_rows() -> None:
    policy = [{"response": "x y x y", "score": 0.0}, {"response": "x y", "score": 1.0}]
    cascade = [{"response": "a b c d e f g h", "score": 1.0, "source": "cascade"}]
    metrics = generation_monitors(policy + cascade, 2)
    # bigrams of the policy's samples: (x y) (y x) (x y) + (x y): 2 distinct of 4
    assert metrics["distinct_2"] == 0.5
    assert metrics["response_words"] == 3.0 and metrics["response_chars"] == 5.0
    assert metrics == generation_monitors(policy, 2)


def test_distinct_n_by_hand() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 3) == pytest.approx(2 / 2)  # (a b a), (b a b)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("flip_rate", "max_flip_rate", "expected"),
    [(None, 0.1, True), (0.1, None, True), (0.1, 0.1, True), (0.11, 0.1, False), (float("nan"), 0.1, True)],
)
def test_flip_gate(flip_rate: float | None, max_flip_rate: float | None, expected: bool) -> None:
    assert should_promote(0.6, 0.5, 0.0, flip_rate, max_flip_rate) is expected
    assert should_promote(0.4, 0.5, 0.0, flip_rate, max_flip_rate) is False
