"""Statistics for accuracy claims: Wilson intervals, the exact McNemar test, a paired bootstrap, their forms for
items that come in groups, and Holm's adjustment for a family of tests.

Two policies scored on the same items are compared on the items where they disagree: `b` items the
reference answered right and the candidate wrong, `c` the reverse. Under "neither is better" each
discordant item is a fair coin, so the exact McNemar test is a two-sided binomial test of `b` in `b + c`
trials at 0.5 (McNemar 1947; the exact form is the one recommended for small counts, Fagerland et al. 2013).

Items in groups. A held-out set may ask one problem several times in other words (the built-in task's 200
validation questions are rewordings of about 80 problems), and a policy mostly gives every wording of a problem
the same verdict, so the items are not independent and counting each as one overstates what the set shows.
With each item's group given (its problem), `clustered_interval` is the Wilson interval at the effective
sample size, the items divided by the design effect of the cluster-robust variance (Kish 1965; floored at 1, as
Korn and Graubard 1998 do for complex surveys), and `clustered_mcnemar` is the exact randomization test that
flips the sign of each group's paired difference as a whole (under "neither is better" each group's two sets of
verdicts are exchangeable). Both reduce to the item forms when every item is its own group.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.stats import binomtest  # untyped: listed in pyproject's [[tool.mypy.overrides]]


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (scipy's `proportion_ci(method="wilson")`).

    Args:
        successes: items right.
        total: items scored; with none, the interval is the whole of [0, 1].
        confidence: the interval's coverage.

    Raises:
        ValueError: counts out of range.
    """
    if total < 0 or not 0 <= successes <= max(total, 0):
        raise ValueError(f"successes={successes}, total={total}: need 0 <= successes <= total")
    if total == 0:
        return 0.0, 1.0
    ci = binomtest(successes, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def clustered_interval(
    credit: Sequence[float], groups: Sequence[Hashable], confidence: float = 0.95, threshold: float = 0.5
) -> tuple[float, float]:
    """The Wilson interval of an accuracy over items that come in groups (module docstring): Wilson's formula at
    the effective sample size `n / deff`, `deff` the design effect of the cluster-robust variance of the
    accuracy, `K / (K - 1) * sum_j (y_j - p m_j)^2 / n^2` over the K groups (y_j right of m_j items), against
    the binomial `p (1 - p) / n`, floored at 1. At p = 0 or 1 (no spread to estimate it from) and with a single
    group (no variance between groups), the K groups count as the sample: the cautious end, so just inside it,
    where the estimate rests on a failure or two, an interval can be the narrower. With every item its own group,
    exactly `wilson_interval`.

    Args:
        credit: each item's credit (right means credit >= `threshold`).
        groups: each item's group (its problem), in the same order.
        confidence: the interval's coverage.

    Raises:
        ValueError: the sequences differ in length.
    """
    right, n, members = _grouped(credit, groups, threshold)
    if n == 0 or len(members) == n:
        return wilson_interval(sum(right), n, confidence)
    p = sum(right) / n
    k = len(members)
    if 0.0 < p < 1.0 and k > 1:
        spread = sum((sum(right[i] for i in items) - p * len(items)) ** 2 for items in members.values())
        variance = k / (k - 1) * spread / n**2
        effective = n / max(1.0, variance / (p * (1 - p) / n))
    else:
        effective = float(k)
    return _wilson(p, effective, confidence)


def clustered_mcnemar(
    candidate: Sequence[float], reference: Sequence[float], groups: Sequence[Hashable], threshold: float = 0.5
) -> float:
    """Two-sided exact p-value of the paired comparison of two policies over items that come in groups: each
    group's difference `d_j` (items only the candidate got right minus items only the reference got right) has
    its sign flipped at random under "neither is better", and the p-value is the chance that `|sum_j +-d_j|`
    reaches the observed `|sum_j d_j|`, summed exactly over all sign patterns. With every item its own group,
    exactly `mcnemar_exact(b, c)`; 1.0 when the two never disagree.

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(candidate) != len(reference):
        raise ValueError(f"paired credit needs equal lengths, got {len(candidate)} and {len(reference)}")
    cand, _, members = _grouped(candidate, groups, threshold)
    ref = [x >= threshold for x in reference]
    diffs = [abs(sum(cand[i] - ref[i] for i in items)) for items in members.values()]
    observed = abs(sum(sum(cand[i] - ref[i] for i in items) for items in members.values()))
    total = sum(diffs)
    if total == 0:
        return 1.0
    # The null distribution of sum_j s_j d_j over s_j = +-1, index t + total for the value t.
    law = np.zeros(2 * total + 1)
    law[total] = 1.0
    for d in (d for d in diffs if d):
        law = 0.5 * (np.roll(law, d) + np.roll(law, -d))  # no wrap: |sum| never exceeds total
    values = np.arange(-total, total + 1)
    return float(min(1.0, law[np.abs(values) >= observed].sum()))


def _grouped(
    credit: Sequence[float], groups: Sequence[Hashable], threshold: float
) -> tuple[list[int], int, dict[Hashable, list[int]]]:
    """Each item right (1) or not (0), the item count, and each group's item indices in first-seen order."""
    if len(credit) != len(groups):
        raise ValueError(f"credit and groups need equal lengths, got {len(credit)} and {len(groups)}")
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return [int(x >= threshold) for x in credit], len(credit), members


def _wilson(p: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for an observed proportion `p` at a (possibly fractional) sample size `n`."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval holds p exactly (at 0 and 1 the bound is p itself), where rounding left 0 + 3.5e-18 at n = 81.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def interval_extents(
    values: Sequence[float], lows: Sequence[float], highs: Sequence[float]
) -> tuple[list[float], list[float]]:
    """How far each value's interval reaches below and above it, as an error bar draws it (matplotlib's `yerr`),
    never negative: an interval logged by an older run may miss its value by a rounding error."""
    below = [max(0.0, v - low) for v, low in zip(values, lows, strict=True)]
    above = [max(0.0, high - v) for v, high in zip(values, highs, strict=True)]
    return below, above


def item_groups(rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> list[str]:
    """Each paired item's group, in `ids`' order: the row's `problem` (the built-in task stamps it when it scores
    a row, `tasks.prompts.item_problem`), else its own id."""
    problem = {str(row["id"]): str(row.get("problem") or row["id"]) for row in rows}
    return [problem[item] for item in ids]


@dataclass(frozen=True)
class PairedCounts:
    """Agreement of a candidate and a reference scored on the same items (right means credit >= 0.5).

    Attributes:
        items: items paired.
        candidate_right: items the candidate answered right.
        reference_right: items the reference answered right.
        b: reference right, candidate wrong (negative flips).
        c: reference wrong, candidate right (positive flips).
    """

    items: int
    candidate_right: int
    reference_right: int
    b: int
    c: int


def paired_credit(
    candidate: Sequence[Mapping[str, Any]],
    reference: Sequence[Mapping[str, Any]],
    *,
    key: str = "score",
    names: tuple[str, str, str] = ("candidate", "champion", "validation"),
) -> tuple[list[str], list[float], list[float]]:
    """Pair two evaluations of the same items by `id`, in the reference's order.

    Args:
        candidate: evaluated rows (`id` and the credit field `key`).
        reference: evaluated rows of the policy compared with.
        key: the credit field.
        names: how errors call the candidate, the reference and the item set.

    Returns:
        The item ids and the candidate's and the reference's credit for each.

    Raises:
        ValueError: a row lacks a field, an id repeats, or the two evaluations were not made on the same
            items (the message counts the ids only one side has and names the first few).
    """
    cand_name, ref_name, items = names
    cand = _by_id(candidate, cand_name, key)
    ref = _by_id(reference, ref_name, key)
    only_cand = [i for i in cand if i not in ref]
    only_ref = [i for i in ref if i not in cand]
    if only_cand or only_ref:
        raise ValueError(
            f"{cand_name} and {ref_name} were scored on different {items} items: "
            f"{len(only_cand)} only in the {cand_name}'s ({_first(only_cand)}), "
            f"{len(only_ref)} only in the {ref_name}'s ({_first(only_ref)})"
        )
    ids = list(ref)
    return ids, [cand[i] for i in ids], [ref[i] for i in ids]


def paired_counts(candidate: Sequence[float], reference: Sequence[float], threshold: float = 0.5) -> PairedCounts:
    """Count agreement of two credit vectors over the same items, in the same order.

    Raises:
        ValueError: the vectors differ in length.
    """
    if len(candidate) != len(reference):
        raise ValueError(f"paired credit needs equal lengths, got {len(candidate)} and {len(reference)}")
    cand = [x >= threshold for x in candidate]
    ref = [x >= threshold for x in reference]
    return PairedCounts(
        items=len(cand),
        candidate_right=sum(cand),
        reference_right=sum(ref),
        b=sum(1 for x, y in zip(cand, ref, strict=True) if y and not x),
        c=sum(1 for x, y in zip(cand, ref, strict=True) if x and not y),
    )


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none).

    Example: b=0, c=6 gives 2 * 0.5**6 = 0.03125.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order: a family of tests, each of which
    rejects at level alpha when its adjusted p is below alpha, keeps the chance of any false rejection at alpha
    whatever the tests' dependence.

    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), capped at 1, and made no smaller than
    the adjusted p before it. Example: (0.01, 0.04, 0.03) gives (0.03, 0.06, 0.06).
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def paired_bootstrap(
    candidate: Sequence[float],
    reference: Sequence[float],
    *,
    resamples: int = 2_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Percentile bootstrap of the accuracy difference (candidate minus reference), resampling items in pairs.

    Returns:
        The observed difference and the interval's low and high ends.

    Raises:
        ValueError: no items, or the vectors differ in length.
    """
    if len(candidate) != len(reference) or not candidate:
        raise ValueError(f"paired bootstrap needs equal, non-zero lengths, got {len(candidate)} and {len(reference)}")
    diffs = np.asarray(candidate, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(diffs.mean()), float(low), float(high)


def _by_id(rows: Sequence[Mapping[str, Any]], side: str, key: str) -> dict[str, float]:
    credit: dict[str, float] = {}
    for line, row in enumerate(rows, start=1):
        missing = [field for field in ("id", key) if field not in row]
        if missing:
            raise ValueError(f"{side} evaluation, row {line}: no {missing[0]!r} field")
        item = str(row["id"])
        if item in credit:
            raise ValueError(f"{side} evaluation, row {line}: id {item!r} appears twice")
        credit[item] = float(row[key])
    return credit


def _first(ids: Sequence[str], shown: int = 3) -> str:
    if not ids:
        return "none"
    return ", ".join(ids[:shown]) + (", ..." if len(ids) > shown else "")


def interval_text(interval: tuple[float, float]) -> str:
    """A 95% interval as every table and line prints it: '[0.804, 0.935]'."""
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def accuracy_text(accuracy: float, interval: tuple[float, float] | None) -> str:
    """'0.875 [0.804, 0.935]', or the accuracy alone without an interval."""
    return f"{accuracy:.3f}" if interval is None else f"{accuracy:.3f} {interval_text(interval)}"


def accuracy_cell(row: Mapping[str, Any], prefix: str) -> str:
    """A table cell "acc [low, high]" from a row's `<prefix>accuracy` and `<prefix>ci_low/high` ("-": not scored)."""
    accuracy = row.get(f"{prefix}accuracy")
    if accuracy is None:
        return "-"
    low, high = row.get(f"{prefix}ci_low"), row.get(f"{prefix}ci_high")
    return accuracy_text(accuracy, None if low is None or high is None else (low, high))
