"""The Meta Ranking judge: rank a target pair against labelled reference pairs, vote by measured precision.

Meta Ranking (Liu et al. 2024, "Enabling Weak LLMs to Judge Response Reliability via Meta Ranking")
judges a target (query, response) by ranking it against a few reference (query, response) pairs of
known correctness, across queries, and aggregating the pairwise outcomes with the references' labels.
The paper publishes no code; this follows its description. The weak LM never sees a label: it is asked
which of two answers is more reliable, read from the option tokens " A" / " B" (`RANK_OPTIONS`):

    <header> Answer A. <first pair>      <- shared prefix, KV cache computed once
    Answer B. <second pair> <question>   -> P(" A") against P(" B")

The reference-first order shares each reference's prefix across every target; with `swap` the
target-first order is asked too (its prefix, the target, is shared by that target's references, one
prefill per target) and the two probabilities of "target above reference" are averaged to cancel
position bias.

Outcome meets label (`evidence`): ranked above a correct reference is strong evidence the target is
correct (+1), below a wrong one strong evidence against (-1); above a wrong one or below a correct one is
weaker evidence (+-`weak`, since being better than a wrong answer, or worse than a right one, says
less). Each reference's vote is weighted by its ranking precision measured on a labelled calibration
split (`calibrate`): over calibration rows whose label differs from the reference's, the mean
probability that the comparison ranked the correct one of the two above. Uncalibrated references weigh
1. The score is 0.5 + 0.5 * (weighted mean evidence), in [0, 1]; its keep-threshold is calibrated on a
separate validation split by the caller.

The label-transfer judge (`tasks.judging.label_transfer`, "is this answer correct too?") and the
pointwise judge (`tasks.judging.lm`) are the baselines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from models.option_scorer import OptionScorer, ProgressFn, score_keyed
from tasks.judging.lm import render_pair
from tasks.judging.reference_bank import assign_references
from tasks.records import Record

RANK_OPTIONS = (" A", " B")
HEADER = (
    "Two questions, each followed by an answer. Decide which answer is more reliable, that is, more likely "
    "to be correct.\n\n"
)
FIRST, SECOND = "Answer A.\n", "Answer B.\n"
QUESTION = "\n\nWhich answer is more reliable, A or B? The more reliable one is"


def ranking_prompt(first: Record, second: Record, template: str, preamble: str = "") -> tuple[str, str]:
    """The (prefix, tail) of one ranking question: P(" A") is the chance `first` is the more reliable pair.

    The prefix (preamble, header, first pair) is the part shared with other comparisons of the same first
    pair; the tail holds the second pair and the question.
    """
    prefix = preamble + HEADER + FIRST + render_pair(first, template) + "\n\n"
    return prefix, SECOND + render_pair(second, template) + QUESTION


def evidence(above: float, reference_correct: bool, weak: float) -> float:
    """What one comparison says about the target, in [-1, 1] (expected over its outcome).

    Args:
        above: P(the target ranks above the reference).
        reference_correct: The reference's label.
        weak: Strength of the weaker outcomes (above a wrong reference, below a correct one), in [0, 1].
    """
    if reference_correct:
        return above * 1.0 - (1.0 - above) * weak
    return above * weak - (1.0 - above) * 1.0


def meta_vote(
    above: Sequence[float], reference_correct: Sequence[bool], weights: Sequence[float], weak: float = 0.5
) -> float:
    """One target's reliability score in [0, 1]: 0.5 + 0.5 * the weighted mean of its comparisons' evidence.

    Returns 0.5 (no evidence) with no comparisons or zero total weight.
    """
    total = value = 0.0
    for p, correct, w in zip(above, reference_correct, weights, strict=True):
        value += w * evidence(p, correct, weak)
        total += w
    return 0.5 + 0.5 * value / total if total > 0 else 0.5


def ranking_precision(above: Sequence[float], target_correct: Sequence[bool], reference_correct: bool) -> float:
    """How often a reference's comparisons rank the correct pair higher, on labelled calibration targets.

    Only targets whose label differs from the reference's are informative (two correct or two wrong
    answers have no right order): for a correct target the comparison should put it above (P = `above`),
    for a wrong one below (1 - `above`). Returns the mean over those, or 0.5 (chance) with none.
    """
    hits = [p if y else 1.0 - p for p, y in zip(above, target_correct, strict=True) if y != reference_correct]
    return sum(hits) / len(hits) if hits else 0.5


class MetaRankingJudge:
    """Scores targets by ranking each against references from a labelled bank (see the module docstring).

    Attributes:
        reference_weights: Per bank reference, its vote weight (1.0 until `calibrate`).
        assignments: After `score`, per target the bank indices of the references that judged it.
        comparisons: After `score`, per target P(target above reference) per reference (swap-averaged).
        forward_passes, seconds: Cost of the last `score` (or `calibrate`) call.
    """

    name = "meta-ranking"

    def __init__(
        self,
        scorer: OptionScorer,
        bank: Sequence[Record],
        *,
        template: str,
        references: int = 5,
        swap: bool = False,
        seed: int = 0,
        weak: float = 0.5,
        reuse_cache: bool = True,
        preamble: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        """Set up the judge.

        Args:
            scorer: Option-token scorer over the judge LM, built with `RANK_OPTIONS`.
            bank: Labelled references (`prompt`, `response`, `correct`).
            template: The prompt template the policy answered (`{prompt}` in it).
            references: References per target.
            swap: Also rank in the target-first order and average (against position bias).
            seed: Seed of the reference draw.
            weak: Strength of the weaker outcomes (see `evidence`).
            reuse_cache: Share prefix KV caches (off only to measure what they save).
            preamble: Text opening every ranking prompt (worked examples).
            progress: Called with (done, total) comparisons.

        Raises:
            ValueError: with an empty bank (one line naming judge.bank).
        """
        if not bank:
            raise ValueError("judge.bank: Meta Ranking needs a non-empty reference bank")
        self.scorer, self.bank, self.template = scorer, list(bank), template
        self.references, self.swap, self.seed, self.weak = references, swap, seed, weak
        self.reuse_cache, self.preamble, self.progress = reuse_cache, preamble, progress
        self.reference_weights = [1.0] * len(self.bank)
        self.assignments: list[list[int]] = []
        self.comparisons: list[list[float]] = []
        self.forward_passes, self.seconds = 0, 0.0

    def calibrate(self, rows: Sequence[Record]) -> list[float]:
        """Measure every reference's ranking precision on labelled rows (`correct`) and use it as its weight.

        Each row is ranked against every reference (both orders with `swap`). The rows must be disjoint from
        the bank and from the rows the threshold is calibrated on.

        Returns:
            The new weights, one per bank reference.
        """
        started, passes = time.perf_counter(), self.scorer.forward_passes
        pairs = [(t, r) for t in range(len(rows)) for r in range(len(self.bank))]
        above = self._above(rows, pairs)
        labels = [bool(row["correct"]) for row in rows]
        self.reference_weights = [
            ranking_precision([above[(t, r)] for t in range(len(rows))], labels, bool(ref["correct"]))
            for r, ref in enumerate(self.bank)
        ]
        self.forward_passes = self.scorer.forward_passes - passes
        self.seconds = time.perf_counter() - started
        return self.reference_weights

    def score(self, rows: Sequence[Record]) -> list[float]:
        """One reliability score in [0, 1] per row (`prompt`, `response`)."""
        started, passes = time.perf_counter(), self.scorer.forward_passes
        self.assignments = assign_references(rows, self.bank, self.references, self.seed)
        above = self._above(rows, [(t, r) for t, refs in enumerate(self.assignments) for r in refs])
        self.comparisons = [[above[(t, r)] for r in refs] for t, refs in enumerate(self.assignments)]
        scores = [
            meta_vote(
                probs,
                [bool(self.bank[r]["correct"]) for r in refs],
                [self.reference_weights[r] for r in refs],
                self.weak,
            )
            for probs, refs in zip(self.comparisons, self.assignments, strict=True)
        ]
        self.forward_passes = self.scorer.forward_passes - passes
        self.seconds = time.perf_counter() - started
        return scores

    def _above(self, rows: Sequence[Record], pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """P(target above reference) per (target, reference) pair, swap-averaged with `swap`."""
        # Reference first: P(" A") is P(reference above), so the target is above with 1 - P(" A").
        first = self._ask(rows, pairs, target_first=False)
        above = {key: 1.0 - p for key, p in first.items()}
        if self.swap:
            second = self._ask(rows, pairs, target_first=True)
            above = {key: (p + second[key]) / 2 for key, p in above.items()}
        return above

    def _ask(self, rows: Sequence[Record], pairs: list[tuple[int, int]], *, target_first: bool) -> dict:
        """P(" A") per (target, reference) pair, comparisons grouped by their shared prefix."""

        def prompt(t: int, r: int) -> tuple[tuple[int, int], str, str]:
            first, second = (rows[t], self.bank[r]) if target_first else (self.bank[r], rows[t])
            return ((t, r), *ranking_prompt(first, second, self.template, self.preamble))

        prompts = (prompt(t, r) for t, r in pairs)
        return score_keyed(self.scorer, prompts, reuse_cache=self.reuse_cache, progress=self.progress)

    def log_rows(self, rows: Sequence[Record]) -> list[Record]:
        """Which references judged which target, and how, after `score`: one record per target."""
        return [
            {
                "id": row.get("id"),
                "sample": row.get("sample"),
                "references": refs,
                "reference_correct": [bool(self.bank[r]["correct"]) for r in refs],
                "reference_weights": [self.reference_weights[r] for r in refs],
                "p_above": probs,
            }
            for row, refs, probs in zip(rows, self.assignments, self.comparisons, strict=True)
        ]
