"""Tests of tasks.judging.report: the split, bootstrap intervals, the paired comparison and the bracket rows."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tasks.judging.report import (
    auroc_interval,
    bootstrap_aurocs,
    bracket_rows,
    compare_with,
    figures,
    markdown_table,
    paired_difference,
    split_by_prompt,
)

RNG = random.Random(4)
LABELS = [RNG.random() < 0.5 for _ in range(80)]
GOOD = [round(0.4 * y + 0.6 * RNG.random(), 2) for y in LABELS]  # separates well, not fully; ties from rounding
NOISE = [round(RNG.random(), 2) for _ in LABELS]


def test_split_by_prompt_gives_disjoint_parts_in_share_order() -> None:
    rows = [{"prompt": f"p{i}", "sample": s} for i in range(16) for s in range(2)]
    bank, calibration, dev, test = split_by_prompt(rows, (0.25, 0.125, 0.125), seed=0)
    assert [len(part) for part in (bank, calibration, dev, test)] == [8, 4, 4, 16]
    prompts = [{r["prompt"] for r in part} for part in (bank, calibration, dev, test)]
    assert sum(len(p) for p in prompts) == 16 and len(set().union(*prompts)) == 16
    assert split_by_prompt(rows, (0.25, 0.125, 0.125), seed=0) == (bank, calibration, dev, test)


def test_split_by_problem_keeps_a_problems_rewordings_in_one_part() -> None:
    rows = [{"prompt": f"wording {w} of p{i}", "problem": f"p{i}"} for i in range(16) for w in range(3)]
    parts = split_by_prompt(rows, (0.25, 0.125, 0.125), seed=0, group_of=lambda row: str(row["problem"]))
    assert [len(part) for part in parts] == [12, 6, 6, 24]
    problems = [{r["problem"] for r in part} for part in parts]
    assert sum(len(p) for p in problems) == 16  # no problem in two parts
    by_text = split_by_prompt(rows, (0.25, 0.125, 0.125), seed=0)  # by prompt text, rewordings scatter
    assert sum(len({r["problem"] for r in part}) for part in by_text) > 16


def test_a_cluster_bootstrap_resamples_whole_problems_and_widens_a_copied_sets_interval() -> None:
    # Every row given four times (four samples of one problem with the same verdicts): by row, the bootstrap
    # sees 320 independent rows and narrows; by problem, it sees the 80 there are.
    labels, scores = LABELS * 4, GOOD * 4
    groups = list(range(80)) * 4
    by_row = auroc_interval(scores, labels, seed=0)
    by_problem = auroc_interval(scores, labels, seed=0, groups=groups)
    once = auroc_interval(GOOD, LABELS, seed=0)
    assert by_row[1] - by_row[0] < 0.6 * (by_problem[1] - by_problem[0])
    assert by_problem[1] - by_problem[0] == pytest.approx(once[1] - once[0], rel=0.25)
    resampled = bootstrap_aurocs([scores], labels, resamples=5, seed=1, groups=groups)
    assert resampled.shape == (1, 5) and not np.isnan(resampled).any()


def test_bootstrap_aurocs_equal_sklearn_on_the_same_resamples() -> None:
    values = bootstrap_aurocs([GOOD], LABELS, resamples=20, seed=3)[0]
    index = np.random.default_rng(3).integers(0, len(LABELS), size=(20, len(LABELS)))
    for k in range(20):
        y = [LABELS[i] for i in index[k]]
        assert values[k] == pytest.approx(roc_auc_score(y, [GOOD[i] for i in index[k]]))


def test_auroc_interval_holds_the_auroc_and_is_seeded() -> None:
    low, high = auroc_interval(GOOD, LABELS, seed=0)
    point = roc_auc_score(LABELS, GOOD)
    assert low < point < high and high - low < 0.25
    assert auroc_interval(GOOD, LABELS, seed=0) == (low, high)
    assert all(math.isnan(v) for v in auroc_interval([0.1, 0.2], [True, True]))


def test_paired_difference_finds_a_better_judge_and_not_an_equal_one() -> None:
    better = paired_difference(GOOD, NOISE, LABELS)
    assert better["diff"] == pytest.approx(roc_auc_score(LABELS, GOOD) - roc_auc_score(LABELS, NOISE))
    assert better["low"] > 0 and 0 < better["p"] < 0.01  # a bootstrap never shows p = 0
    same = paired_difference(GOOD, GOOD, LABELS)
    assert (same["diff"], same["low"], same["high"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
    worse = paired_difference(NOISE, GOOD, LABELS)
    assert worse["high"] < 0 and worse["p"] < 0.01


def test_bracket_rows_oracle_and_keep_all() -> None:
    rows = bracket_rows(LABELS)
    oracle, keep = rows["verifier-oracle"], rows["keep-all"]
    assert (oracle["auroc"], oracle["precision"], oracle["recall"], oracle["keep_precision"]) == (1.0, 1.0, 1.0, 1.0)
    assert keep["auroc"] == 0.5 and (keep["auroc_low"], keep["auroc_high"]) == (0.5, 0.5)
    assert keep["recall"] == 0.0 and keep["keep_share"] == 1.0
    assert keep["keep_precision"] == pytest.approx(sum(LABELS) / len(LABELS))


def test_compare_with_pointwise_and_the_markdown_table() -> None:
    results = {"pointwise": figures(NOISE, LABELS, 0.5), "meta-ranking": figures(GOOD, LABELS, 0.6)}
    for r in results.values():
        r["seconds_per_sample"] = 0.25
    results.update(bracket_rows(LABELS))
    compare_with(results, LABELS, "pointwise")
    assert "vs_pointwise_diff" not in results["pointwise"]
    assert results["meta-ranking"]["vs_pointwise_low"] > 0 and results["meta-ranking"]["vs_pointwise_p"] < 0.01
    table = markdown_table(results).splitlines()
    assert (
        len(table) == 2 + 4 and table[3].startswith("| meta-ranking | ") and "| verifier-oracle | 1.000 |" in table[4]
    )
