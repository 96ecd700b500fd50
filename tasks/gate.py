"""The promotion gate: decide from paired validation credit whether a round's policy is promoted.

The rule (`decide`). A candidate is promoted iff all three hold:

1. **No drift.** Its validation accuracy is at least `best_accuracy - margin`, where `best_accuracy` is the
   best validation accuracy any promoted policy has reached (the starting policy counts as promoted). The
   bar is never the last promoted accuracy: with that bar, N rounds could each lose just under `margin`
   and the campaign would give away N x margin without one refusal.
2. **Not significantly worse than the champion.** When `alpha` is given, the candidate is refused if it
   is below the champion (the best promoted policy so far) on the same validation items and the two-sided
   exact McNemar test on the items where they disagree gives p < alpha, a one-sided level of alpha / 2
   (`tasks/stats.py`; its form for items in groups, `clustered_mcnemar`, where the rows name their problem:
   rewordings of one problem are one group).
3. **Few negative flips.** When `max_flip_rate` is given, the share of validation items the champion
   answered right and the candidate answers wrong must not exceed it (MUSCLE, Echterhoff et al. 2024).

The decision is a frozen record whose `reason` is one sentence a person reads in the round's MLflow run.

The registry's champion alias follows the same idea with no margin (`alias_displaces`): a version takes
the alias only from a version scored on the same validation set (same content hash) and only with at
least its accuracy, so the alias points at the best validation accuracy among comparable versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tasks.stats import clustered_mcnemar, item_groups, paired_counts, paired_credit

TOLERANCE = 1e-9  # accuracies are k/n and bars are sums of floats: 0.6 - 0.02 must still admit 0.58


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why.

    Attributes:
        promoted: whether the candidate is promoted.
        reason: one sentence for people (logged as a tag on the round run).
        items: validation items both policies were scored on.
        candidate_accuracy: the candidate's validation accuracy.
        champion_accuracy: the champion's validation accuracy on the same items.
        best_accuracy: the best validation accuracy reached before this decision (the margin's origin).
        best_after: the best after it (the candidate's accuracy if promoted above it); the next round's input.
        margin: how far below `best_accuracy` a promoted candidate may be.
        p_value: exact McNemar p-value, candidate vs champion (1.0 when they never disagree), over the rows'
            problems (`tasks.stats.clustered_mcnemar`).
        b: items the champion answered right and the candidate wrong.
        c: items the champion answered wrong and the candidate right.
        flip_rate: b / items.
    """

    promoted: bool
    reason: str
    items: int
    candidate_accuracy: float
    champion_accuracy: float
    best_accuracy: float
    best_after: float
    margin: float
    p_value: float
    b: int
    c: int
    flip_rate: float

    def metrics(self) -> dict[str, float]:
        """The decision as `gate/*` metrics for MLflow (the reason goes in a tag)."""
        values = asdict(self)
        del values["reason"]
        return {f"gate/{key}": float(value) for key, value in values.items()}


def decide(
    candidate: Sequence[Mapping[str, Any]],
    champion: Sequence[Mapping[str, Any]],
    *,
    best_accuracy: float,
    margin: float,
    alpha: float | None = None,
    max_flip_rate: float | None = None,
) -> GateDecision:
    """Decide promotion by the rule in the module docstring.

    Args:
        candidate: the candidate's evaluated validation rows (`id`, `score`; right means score >= 0.5; `problem`,
            when rows name it, groups rewordings of one problem for the test).
        champion: the champion's evaluated rows on the same items.
        best_accuracy: the best validation accuracy any promoted policy reached (the champion's own counts
            too, so a caller cannot set the bar below it).
        margin: absolute accuracy a candidate may lose from `best_accuracy`.
        alpha: refuse a candidate significantly worse than the champion at this level; None: no such test.
        max_flip_rate: refuse when the negative-flip rate exceeds this; None: no flip gate.

    Raises:
        ValueError: no common items, mismatched items, or a setting out of range.
    """
    _check_unit("best_accuracy", best_accuracy)
    _check_unit("margin", margin)
    if alpha is not None and not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}: must be between 0 and 1 (exclusive)")
    if max_flip_rate is not None:
        _check_unit("max_flip_rate", max_flip_rate)
    ids, cand, champ = paired_credit(candidate, champion)
    if not cand:
        raise ValueError("the gate needs at least one validation item scored for both policies")
    counts = paired_counts(cand, champ)
    n = counts.items
    acc, champ_acc = counts.candidate_right / n, counts.reference_right / n
    best = max(best_accuracy, champ_acc)
    p_value = clustered_mcnemar(cand, champ, item_groups(champion, ids))
    flip_rate = counts.b / n

    refusals = []
    if acc < best - margin - TOLERANCE:
        refusals.append(f"{acc:.3f} is more than {margin:g} below the best {best:.3f}")
    if alpha is not None and counts.b > counts.c and p_value < alpha:
        refusals.append(f"significantly worse than the champion (p={p_value:.2g} < {alpha:g})")
    if max_flip_rate is not None and flip_rate > max_flip_rate + TOLERANCE:
        refusals.append(f"negative-flip rate {flip_rate:.3f} above {max_flip_rate:g}")
    promoted = not refusals
    comparison = (
        f"{acc:.3f} vs champion {champ_acc:.3f} on {n} validation items "
        f"(b={counts.b}, c={counts.c}, McNemar p={p_value:.2g})"
    )
    if not promoted:
        reason = f"refused: {comparison}; " + "; ".join(refusals)
    elif acc > best + TOLERANCE:
        reason = f"promoted: {comparison}; a new best (was {best:.3f})"
    else:
        reason = f"promoted: {comparison}; within {margin:g} of the best {best:.3f}"
    return GateDecision(
        promoted=promoted,
        reason=reason,
        items=n,
        candidate_accuracy=acc,
        champion_accuracy=champ_acc,
        best_accuracy=best,
        best_after=max(best, acc) if promoted else best,
        margin=margin,
        p_value=p_value,
        b=counts.b,
        c=counts.c,
        flip_rate=flip_rate,
    )


def holds_the_best(accuracy: float, best: float) -> bool:
    """Whether a validation accuracy is at least the best so far (to float tolerance): ties go to the newer. The rule
    that makes a promoted round the campaign's champion (`flows.round.RoundInputs.after`, the ablation report's final
    policy) and a registered version the registry's (`alias_displaces`)."""
    return accuracy >= best - TOLERANCE


def alias_displaces(
    candidate_accuracy: float, candidate_set: str | None, champion_accuracy: float, champion_set: str | None
) -> bool:
    """Whether a registered version takes the champion alias from the current champion.

    Only a version scored on the same validation set (same content hash, not None) can displace, and only
    with at least the champion's validation accuracy: taken over the versions in registration order, the
    alias ends on the best accuracy among versions comparable with the first (ties go to the newer).
    """
    if candidate_set is None or candidate_set != champion_set:
        return False
    return holds_the_best(candidate_accuracy, champion_accuracy)


def should_promote(
    candidate: float,
    incumbent: float,
    margin: float,
    flip_rate: float | None = None,
    max_flip_rate: float | None = None,
) -> bool:
    """The previous, scalar rule: keep a policy unless accuracy fell more than `margin` below `incumbent`'s, or
    its negative-flip rate exceeds `max_flip_rate`. It drifts when `incumbent` is the last promoted accuracy
    rather than the best; kept for callers not yet moved to `decide`."""
    if max_flip_rate is not None and flip_rate is not None and flip_rate > max_flip_rate + 1e-12:
        return False
    return candidate >= incumbent - margin - 1e-12


def _check_unit(name: str, value: float) -> None:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value}: must be between 0 and 1")
