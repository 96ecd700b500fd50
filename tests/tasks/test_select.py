"""Unit tests for tasks.select: threshold, ranking, dedupe, caps, order, SFT examples and the summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from configs.fields import DEFAULT_ANSWER_PATTERN
from configs.loader import load_config
from tasks.records import Record
from tasks.select import diverse_indices, gold_count, gold_draw, gold_rows, select, select_summary, to_sft_examples


def rows_with_scores(*specs: tuple[str, int, float] | tuple[str, int, float, str]) -> list[Record]:
    """Judged rows from (prompt id, sample, score[, response]); the response defaults to "id/sample"."""
    out = []
    for pid, sample, score, *response in specs:
        text = response[0] if response else f"{pid}/{sample}"
        out.append({"id": pid, "sample": sample, "prompt": f"q-{pid}", "response": text, "score": score})
    return out


def keys(selected: list[Record]) -> list[tuple[str, int]]:
    return [(r["id"], r["sample"]) for r in selected]


def run(rows: list[Record], **overrides: object) -> list[Record]:
    options: dict[str, object] = {"threshold": 0.5, "best_of_k": False, "max_per_prompt": 10, "dedupe": False}
    options.update(overrides)
    return select(rows, **options)  # type: ignore[arg-type]


def test_threshold_is_inclusive() -> None:
    rows = rows_with_scores(("a", 0, 0.49), ("a", 1, 0.5), ("a", 2, 1.0))
    assert keys(run(rows)) == [("a", 2), ("a", 1)]


def test_prompts_keep_first_seen_order_and_rank_within() -> None:
    rows = rows_with_scores(("b", 0, 0.6), ("a", 0, 1.0), ("b", 1, 0.9), ("a", 1, 0.8), ("c", 0, 0.1))
    assert keys(run(rows)) == [("b", 1), ("b", 0), ("a", 0), ("a", 1)]


def test_ties_break_by_sample_index_not_input_order() -> None:
    rows = rows_with_scores(("a", 3, 1.0), ("a", 1, 1.0), ("a", 2, 1.0))
    assert keys(run(rows)) == [("a", 1), ("a", 2), ("a", 3)]


def test_best_of_k_keeps_one_per_prompt_earliest_sample_on_ties() -> None:
    rows = rows_with_scores(("a", 2, 1.0), ("a", 0, 1.0), ("a", 1, 0.7), ("b", 0, 0.6), ("b", 1, 0.8))
    assert keys(run(rows, best_of_k=True, max_per_prompt=3)) == [("a", 0), ("b", 1)]


def test_cap_per_prompt() -> None:
    rows = rows_with_scores(*[("a", i, 1.0) for i in range(4)], ("b", 0, 1.0))
    assert keys(run(rows, max_per_prompt=2)) == [("a", 0), ("a", 1), ("b", 0)]


def test_dedupe_compares_stripped_text_per_prompt_before_the_cap() -> None:
    rows = rows_with_scores(
        ("a", 0, 1.0, "The answer is 4"),
        ("a", 1, 1.0, "  The answer is 4\n"),
        ("a", 2, 1.0, "2 + 2 = 4. The answer is 4"),
        ("b", 0, 1.0, "The answer is 4"),  # same text, other prompt: kept
    )
    assert keys(run(rows, dedupe=True, max_per_prompt=2)) == [("a", 0), ("a", 2), ("b", 0)]
    assert keys(run(rows, dedupe=False, max_per_prompt=2)) == [("a", 0), ("a", 1), ("b", 0)]


def test_dedupe_keeps_the_higher_scoring_copy() -> None:
    rows = rows_with_scores(("a", 0, 0.6, "same"), ("a", 1, 0.9, "same"))
    kept = run(rows, dedupe=True)
    assert keys(kept) == [("a", 1)] and kept[0]["score"] == 0.9


def test_select_returns_copies_and_is_deterministic() -> None:
    rows = rows_with_scores(("a", 0, 1.0), ("b", 0, 1.0))
    kept = run(rows)
    kept[0]["response"] = "changed"
    assert rows[0]["response"] == "a/0"
    assert run(rows) == run(list(rows))


def test_nothing_passes() -> None:
    assert run(rows_with_scores(("a", 0, 0.0)), threshold=0.5) == []


def test_max_per_prompt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_per_prompt"):
        run([], max_per_prompt=0)


def test_to_sft_examples_prompt_completion() -> None:
    rows = [{"prompt": "What is {x}?", "response": " 4. The answer is 4."}]
    assert to_sft_examples(rows, "Question: {prompt}\nAnswer:") == [
        {"prompt": "Question: What is {x}?\nAnswer:", "completion": " 4. The answer is 4."}
    ]


def test_select_summary() -> None:
    judged = rows_with_scores(("a", 0, 1.0), ("a", 1, 1.0), ("b", 0, 0.0), ("c", 0, 1.0))
    selected = run(judged)
    assert select_summary(selected, judged) == {
        "rows": 3.0,
        "prompts_covered": 2.0,
        "share_of_judged": 0.75,
        "gold_rows": 0.0,
    }
    empty = select_summary([], [])
    assert empty["rows"] == 0.0 and math.isnan(empty["share_of_judged"])


def test_kmeans_choice_then_gold_rows_make_the_configured_mix() -> None:
    """The select task's order: rules, then one row per k-means cluster, then gold rows on top (hand-computed)."""
    judged = rows_with_scores(
        ("a", 0, 1.0), ("a", 1, 1.0), ("b", 0, 1.0), ("c", 0, 1.0), ("d", 0, 0.0), ("e", 0, 1.0), ("f", 0, 1.0)
    )  # fmt: skip
    for row in judged:
        row["answer"] = "1"
    kept = run(judged)  # 6 rows pass the threshold
    # embeddings by hand: a/0, a/1 and b/0 together; c/0 alone; e/0 and f/0 together
    vectors = np.array([[0.0, 0.0], [0.0, 0.2], [0.0, 0.1], [10.0, 0.0], [0.0, 10.0], [0.0, 10.2]])
    chosen = [kept[i] for i in diverse_indices(vectors, 3, seed=0)]
    assert keys(chosen) == [("b", 0), ("c", 0), ("e", 0)]  # nearest each centroid (ties: the lowest index)
    gold = gold_rows(judged, gold_count(len(chosen), 0.25), seed=0)  # a quarter of 4 rows: 1 gold row
    assert len(gold) == 1 and gold[0]["response"] == " The answer is 1." and gold[0]["source"] == "gold"
    summary = select_summary(chosen + gold, judged)
    assert summary == {
        "rows": 4.0,
        "prompts_covered": pytest.approx(len({*"bce", gold[0]["id"]})),
        "share_of_judged": 3 / 7,
        "gold_rows": 1.0,
    }


def test_under_require_work_a_gold_row_with_only_an_answer_is_not_trained_on() -> None:
    """A file prompt with an answer but no `solution` column makes the gold row " The answer is N.": under
    judge.require_work it is left out before the draw, as a sample saying only that would be, so the rows asked for
    come from the prompts with right worked solutions, whatever the seed; the filters' target sets draw the same way."""
    prompts = [
        {"id": "bare", "prompt": "Ann has 3 pens and buys 4. How many?", "answer": "7"},
        {"id": "worked", "prompt": "Bo has 9 and breaks 2.", "answer": "7", "solution": " 9 - 2 = 7. The answer is 7."},
        {"id": "wrong", "prompt": "Cy has 5 and gets 5.", "answer": "10", "solution": " 5 + 5 = 11. The answer is 10."},
        {"id": "also", "prompt": "Di has 4 and gets 4.", "answer": "8", "solution": " 4 + 4 = 8. The answer is 8."},
    ]  # fmt: skip
    for seed in range(6):
        drawn = gold_rows(prompts, 2, seed=seed, answer_pattern=DEFAULT_ANSWER_PATTERN)
        assert {row["id"] for row in drawn} == {"worked", "also"}
    assert {row["id"] for row in gold_rows(prompts, 4, seed=0)} == {"bare", "worked", "wrong", "also"}
    # The campaign's draw, for training's gold rows and the color and dsir filters' target sets alike.
    assert {row["id"] for row in gold_draw(load_config("tiny"))(prompts, 4, seed=0)} == {"worked", "also"}
    assert len(gold_draw(load_config("tiny", ["judge.require_work=false"]))(prompts, 4, seed=0)) == 4
