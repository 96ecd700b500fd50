"""Judge thresholds and judge quality: calibrate a keep-threshold on labelled scores, measure error detection.

A judge scores responses in [0, 1]; selection keeps those scoring at least a threshold. Here the
threshold is fitted on a labelled dev split, either for the best F1 of keeping correct responses or for
the largest keep-set whose precision (share of kept responses that are correct, the purity of the
training data) reaches a target, and `rescale` maps raw scores so that the calibrated threshold lands on
the one selection applies. The report side measures a judge as an error detector: a response is
flagged when it scores below the threshold, and the flagged wrong responses are the true positives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal


def candidate_thresholds(scores: Sequence[float]) -> list[float]:
    """Thresholds that split `scores` every possible way: the lowest score, then midpoints between
    neighbouring distinct scores, ascending (the highest keeps only the top score)."""
    distinct = sorted(set(float(s) for s in scores))
    if not distinct:
        return []
    return [distinct[0]] + [(low + high) / 2 for low, high in zip(distinct, distinct[1:], strict=False)]


def keep_stats(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of keeping correct responses: kept = score >= threshold, positive = correct.

    A ratio with nothing to count is 0.0 (F1 too).
    """
    return _prf([bool(y) for y in labels], [s >= threshold for s in scores])


def calibrate_threshold(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    target: Literal["f1", "precision"] = "f1",
    precision: float = 0.9,
) -> float:
    """The keep-threshold that best serves `target` on a labelled dev split.

    Args:
        scores: Judge scores of the dev responses.
        labels: Whether each dev response is correct.
        target: "f1": the threshold with the best F1 of keeping correct responses (ties: the lowest
            threshold, keeping more data); "precision": the lowest threshold whose kept responses are at
            least `precision` correct (the most data at that purity); when none reaches it, the threshold
            with the highest precision (ties: the lowest).
        precision: The precision goal of target "precision".

    Returns:
        The threshold (keep responses scoring >= it). With no correct dev response nothing is worth keeping:
        a threshold above every dev score and above 1 (judge scores lie in [0, 1]), which rejects everything.

    Raises:
        ValueError: with no scores, or scores and labels of different lengths.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    candidates = candidate_thresholds(scores)
    if not candidates:
        raise ValueError("cannot calibrate a threshold on no scores")
    if not any(bool(y) for y in labels):
        # Every F1 is 0 and every precision 0 here, so the tie rules would keep everything: the opposite of the
        # evidence.
        return math.nextafter(max(1.0, max(float(s) for s in scores)), math.inf)
    stats = [(t, *keep_stats(scores, labels, t)) for t in candidates]
    if target == "f1":
        return max(stats, key=lambda row: (row[3], -row[0]))[0]
    reaching = [row for row in stats if row[1] >= precision]
    if reaching:
        return min(row[0] for row in reaching)
    return max(stats, key=lambda row: (row[1], -row[0]))[0]


def error_detection(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of flagging wrong responses (flagged = score < threshold; positive = wrong).

    Returns:
        `precision`, `recall`, `f1` (0.0 where there is nothing to count), `flagged_share`.
    """
    flagged = [s < threshold for s in scores]
    p, r, f = _prf([not y for y in labels], flagged)
    return {"precision": p, "recall": r, "f1": f, "flagged_share": sum(flagged) / len(scores) if scores else math.nan}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a correct response outscores a wrong one (ties count half).

    The same number is the AUROC of error detection by low score. NaN unless both classes occur.
    """
    from sklearn.metrics import roc_auc_score  # the Mann-Whitney statistic, ties counting half

    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if len(set(bool(y) for y in labels)) < 2:
        return math.nan
    return float(roc_auc_score([bool(y) for y in labels], [float(s) for s in scores]))


def roc_points(scores: Sequence[float], labels: Sequence[bool]) -> tuple[list[float], list[float]]:
    """The ROC curve of error detection (flag when score < t, t sweeping up): (false, true positive rates).

    Starts at (0, 0) and ends at (1, 1), one point per distinct score; empty lists unless both classes occur.
    """
    from sklearn.metrics import roc_curve

    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if len(set(bool(y) for y in labels)) < 2:
        return [], []
    # Positive = wrong, ranked by low score: flagging at -score >= -t is flagging at score <= t.
    fpr, tpr, _ = roc_curve([not y for y in labels], [-float(s) for s in scores], drop_intermediate=False)
    return [float(x) for x in fpr], [float(x) for x in tpr]


def rescale(raw: float, threshold: float, target: float) -> float:
    """Map a raw score so that `threshold` lands on `target`, monotonically, keeping [0, 1] in [0, 1].

    An LM judge's raw reliability has its own scale, so selection (which keeps rows whose score reaches
    `select.threshold`) reads the mapped score: piecewise linear, 0 -> 0, `threshold` -> `target`, 1 -> 1.
    `rescale(raw) >= target` holds exactly when `raw >= threshold`.
    """
    if raw >= threshold:
        if threshold >= 1.0:
            return max(target, min(1.0, raw))
        return min(1.0, target + (raw - threshold) * (1.0 - target) / (1.0 - threshold))
    below = raw * target / threshold if threshold > 0 else 0.0
    return min(below, math.nextafter(target, -math.inf))


def _prf(actual: list[bool], predicted: list[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the positive class (scikit-learn; 0.0 where there is nothing to count)."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(actual) != len(predicted):
        raise ValueError(f"{len(predicted)} scores but {len(actual)} labels")
    if not actual:
        return 0.0, 0.0, 0.0
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, labels=[True], average=None, zero_division=0.0)
    return float(p[0]), float(r[0]), float(f[0])
