"""Unit tests for selection beyond thresholds: k-means diversity, near-duplicates and gold examples."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.select import diverse_indices, gold_count, gold_rows, kmeans, select, text_similarity


def test_kmeans_selection_picks_the_member_nearest_each_centroid() -> None:
    # Three tight clusters; in each, the middle point sits on its cluster's centroid.
    points = np.array(
        [
            [0.0, 0.0], [0.0, 1.0], [0.0, 2.0],  # cluster A, centroid (0, 1): index 1
            [10.0, 0.0], [11.0, 0.0], [12.0, 0.0],  # cluster B, centroid (11, 0): index 4
            [5.0, 20.0], [5.0, 21.0], [5.0, 22.0],  # cluster C, centroid (5, 21): index 7
        ]
    )  # fmt: skip
    for seed in range(5):
        assert diverse_indices(points, 3, seed=seed) == [1, 4, 7]


def test_kmeans_labels_group_the_clusters_and_cap_k_at_distinct_points() -> None:
    points = np.array([[0.0, 0.0], [0.1, 0.0], [9.0, 9.0], [9.0, 9.1]])
    labels, centres = kmeans(points, 2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert centres.shape == (2, 2)
    same = np.zeros((5, 3))
    labels, centres = kmeans(same, 4, seed=0)
    assert len(centres) == 1 and set(labels.tolist()) == {0}


def test_diverse_indices_keeps_everything_when_there_are_few_points() -> None:
    assert diverse_indices(np.eye(3), 5, seed=0) == [0, 1, 2]


def test_text_similarity_is_trigram_jaccard_ignoring_case_and_spacing() -> None:
    assert text_similarity("The answer is 7.", "the  answer is 7.") == 1.0
    assert text_similarity("abcd", "abce") == pytest.approx(1 / 3)  # {abc, bcd} vs {abc, bce}
    assert text_similarity("", "") == 1.0


def test_near_duplicates_are_dropped_before_the_cap() -> None:
    rows = [
        {"id": "a", "sample": 0, "prompt": "q", "response": " 3 + 4 = 7. The answer is 7.", "score": 1.0},
        {"id": "a", "sample": 1, "prompt": "q", "response": " 3 + 4 = 7.  The answer is 7!", "score": 1.0},
        {"id": "a", "sample": 2, "prompt": "q", "response": " Seven.", "score": 1.0},
    ]
    options = {"threshold": 0.5, "best_of_k": False, "max_per_prompt": 2, "dedupe": True}
    assert [r["sample"] for r in select(rows, **options)] == [0, 1]
    assert [r["sample"] for r in select(rows, **options, near_duplicate=0.8)] == [0, 2]


def test_gold_count_makes_gold_the_configured_share_of_the_mix() -> None:
    assert gold_count(30, 0.25) == 10  # 10 / (30 + 10) = 0.25
    assert gold_count(30, 0.0) == 0
    assert gold_count(0, 0.5) == 0


def test_gold_rows_use_the_solution_else_the_answer_and_one_per_prompt() -> None:
    prompts = [
        {"id": "a", "prompt": "qa", "answer": "7", "solution": " 3 + 4 = 7. The answer is 7."},
        {"id": "a", "prompt": "qa", "answer": "7", "solution": " 3 + 4 = 7. The answer is 7."},
        {"id": "b", "prompt": "qb", "answer": "5"},
        {"id": "c", "prompt": "qc", "answer": None},
    ]
    gold = gold_rows(prompts, 5, seed=0)
    assert sorted(row["id"] for row in gold) == ["a", "b"]  # c has no target; a counts once
    by_id = {row["id"]: row for row in gold}
    assert by_id["a"]["response"] == " 3 + 4 = 7. The answer is 7."
    assert by_id["b"]["response"] == " The answer is 5."
    assert all(row["source"] == "gold" and row["score"] == 1.0 for row in gold)
    assert gold_rows(prompts, 1, seed=3) == gold_rows(prompts, 1, seed=3)
    assert len(gold_rows(prompts, 1, seed=3)) == 1
