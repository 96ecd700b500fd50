"""Unit tests of tasks.judging.calibration: thresholds, keep and error-detection statistics, AUROC, the
rescaling onto selection's threshold. Expected values are computed by hand."""

from __future__ import annotations

import math

import pytest

from tasks.judging.calibration import (
    auroc,
    calibrate_threshold,
    candidate_thresholds,
    error_detection,
    keep_stats,
    rescale,
    roc_points,
)

SCORES = [0.1, 0.4, 0.35, 0.8, 0.7]


LABELS = [False, False, True, True, True]


def test_candidate_thresholds_are_the_lowest_score_then_midpoints() -> None:
    assert candidate_thresholds(SCORES) == pytest.approx([0.1, 0.225, 0.375, 0.55, 0.75])
    assert candidate_thresholds([]) == []


def test_keep_stats_by_hand() -> None:
    # t=0.225 keeps 0.35, 0.4, 0.7, 0.8: 3 of 4 correct, all 3 correct kept.
    precision, recall, f1 = keep_stats(SCORES, LABELS, 0.225)
    assert (precision, recall) == pytest.approx((0.75, 1.0))
    assert f1 == pytest.approx(2 * 0.75 / 1.75)


def test_calibrate_for_best_f1() -> None:
    # F1 by threshold: 0.1 -> .75, 0.225 -> .857, 0.375 -> .667, 0.55 -> .8, 0.75 -> .5
    assert calibrate_threshold(SCORES, LABELS, target="f1") == pytest.approx(0.225)


def test_calibrate_for_precision_takes_the_lowest_threshold_reaching_it() -> None:
    assert calibrate_threshold(SCORES, LABELS, target="precision", precision=0.9) == pytest.approx(0.55)
    assert calibrate_threshold(SCORES, LABELS, target="precision", precision=0.7) == pytest.approx(0.225)
    # Unreachable: the best precision (0.5 at t=0.2; 0 at t=0.5) wins.
    assert calibrate_threshold([0.2, 0.8], [True, False], target="precision", precision=0.9) == pytest.approx(0.2)


def test_calibrate_rejects_empty_or_mismatched_input() -> None:
    with pytest.raises(ValueError, match="no scores"):
        calibrate_threshold([], [])
    with pytest.raises(ValueError, match="labels"):
        calibrate_threshold([0.1], [True, False])


def test_error_detection_and_auroc_by_hand() -> None:
    # Flagged below 0.55: 0.1 (wrong), 0.4 (wrong), 0.35 (right): precision 2/3, recall 2/2.
    found = error_detection(SCORES, LABELS, 0.55)
    assert found["precision"] == pytest.approx(2 / 3)
    assert found["recall"] == 1.0
    assert found["f1"] == pytest.approx(0.8)
    assert found["flagged_share"] == pytest.approx(0.6)
    # Correct [0.35, 0.8, 0.7] against wrong [0.1, 0.4]: 5 of 6 pairs ordered right.
    assert auroc(SCORES, LABELS) == pytest.approx(5 / 6)
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert math.isnan(auroc([0.5], [True]))


def test_roc_points_run_from_origin_to_one() -> None:
    fpr, tpr = roc_points(SCORES, LABELS)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)


def test_rescale_puts_the_calibrated_threshold_on_the_selection_threshold() -> None:
    assert rescale(0.25, 0.25, 0.5) == 0.5
    assert rescale(0.625, 0.25, 0.5) == pytest.approx(0.75)
    assert rescale(1.0, 0.25, 0.5) == 1.0
    assert rescale(0.0, 0.25, 0.5) == 0.0
    assert rescale(0.2499999999, 0.25, 0.5) < 0.5
    assert rescale(0.3, 0.0, 0.5) >= 0.5
