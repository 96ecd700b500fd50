"""The label-transfer judge: a baseline that asks whether a target shares a labelled reference's label.

Kept as the baseline Meta Ranking (`tasks.judging.meta_ranking`) is set apart from: it copies a label by
in-context learning, which is the few-shot method Liu et al. 2024 ("Enabling Weak LLMs to Judge Response
Reliability via Meta Ranking") compare against, not their ranking. Configs name it `label-transfer`
(before issue 14 it ran under `meta-ranking`). Each comparison is one prompt for a base causal LM:

    <header> <reference pair> "This answer is correct."   <- shared prefix, KV cache computed once
    <target pair> "Is this answer correct too? Reply yes or no:"   -> P(" yes") vs P(" no")

(`wrong` in place of `correct` for a wrong reference). P(yes) says the target has the reference's label,
so a comparison votes `p` for the target being correct against a correct reference and `1 - p` against
a wrong one; the score is the vote's weighted mean. With `swap`, every comparison is also asked with the
target first and the reference second (then the target's prefix is the one shared, across its
references), and the two probabilities are averaged to cancel position bias. Balanced references cancel
the base LM's habit of copying the label it has just read.

The pointwise judge (`tasks.judging.lm`) is the other baseline: P(" yes") to "Is this answer correct?"
after the pair alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from models.option_scorer import OptionScorer, ProgressFn, score_keyed
from tasks.judging.lm import render_pair
from tasks.judging.reference_bank import assign_references
from tasks.records import Record

HEADER = "Each answer below is marked correct or wrong.\n\n"


def label_word(correct: bool) -> str:
    """The word a prompt uses for a label."""
    return "correct" if correct else "wrong"


def comparison_prompts(
    target: Record, reference: Record, template: str, *, swapped: bool, preamble: str = ""
) -> tuple[str, str]:
    """The (prefix, tail) of one comparison; the prefix is the part shared with other comparisons.

    Reference first (`swapped=False`): the prefix holds the preamble, the header and the labelled reference,
    shared by every target compared with that reference. Target first: the prefix holds the preamble, the
    header and the target, shared by all its references. `preamble` (the campaign's few-shot worked
    examples, say) opens every prompt.
    """
    label = label_word(bool(reference["correct"]))
    ref = f"{render_pair(reference, template)}\nThis answer is {label}.\n\n"
    tgt = render_pair(target, template)
    if not swapped:
        return preamble + HEADER + ref, f"{tgt}\nIs this answer {label} too? Reply yes or no:"
    return (
        preamble + HEADER + f"{tgt}\n\n",
        f"{render_pair(reference, template)}\nThis answer is {label}.\nIs the first answer {label} too? "
        "Reply yes or no:",
    )


def vote(
    p_same: Sequence[float], reference_correct: Sequence[bool], weights: tuple[float, float] = (1.0, 1.0)
) -> float:
    """The weighted vote of one target's comparisons: its reliability score in [0, 1].

    A comparison with a correct reference votes `p` (the chance the target shares its label, i.e. is
    correct); with a wrong reference it votes `1 - p`. Votes are averaged with weight `weights[0]` for
    correct references and `weights[1]` for wrong ones.

    Args:
        p_same: Per reference, P(the target has the reference's label).
        reference_correct: Per reference, its label.
        weights: (weight of a correct reference's vote, weight of a wrong reference's vote).

    Returns:
        The score; 0.5 (no evidence) with no comparisons or zero total weight.
    """
    total = value = 0.0
    for p, correct in zip(p_same, reference_correct, strict=True):
        w = weights[0] if correct else weights[1]
        value += w * (p if correct else 1.0 - p)
        total += w
    return value / total if total > 0 else 0.5


class LabelTransferJudge:
    """Scores targets by comparing each with references from a labelled bank (see the module docstring).

    Attributes:
        assignments: After `score`, per target the bank indices of the references that judged it.
        comparisons: After `score`, per target the P(same label) of each reference (swap-averaged).
        forward_passes, seconds: Cost of the last `score` call.
    """

    name = "label-transfer"

    def __init__(
        self,
        scorer: OptionScorer,
        bank: Sequence[Record],
        *,
        template: str,
        references: int = 5,
        swap: bool = False,
        seed: int = 0,
        weights: tuple[float, float] = (1.0, 1.0),
        reuse_cache: bool = True,
        preamble: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        """Set up the judge.

        Args:
            scorer: Option-token scorer over the judge LM, built with `tasks.judging.lm.OPTIONS` (yes/no).
            bank: Labelled references (`prompt`, `response`, `correct`).
            template: The prompt template the policy answered (`{prompt}` in it).
            references: References per target.
            swap: Also compare in the swapped order and average.
            seed: Seed of the reference draw.
            weights: Vote weights of correct and wrong references.
            reuse_cache: Share prefix KV caches (off only to measure what they save).
            preamble: Text opening every comparison prompt (worked examples).
            progress: Called with (done, total) comparisons.

        Raises:
            ValueError: with an empty bank.
        """
        if not bank:
            raise ValueError("label transfer needs a non-empty reference bank")
        self.scorer, self.bank, self.template = scorer, list(bank), template
        self.references, self.swap, self.seed, self.weights = references, swap, seed, weights
        self.reuse_cache, self.preamble, self.progress = reuse_cache, preamble, progress
        self.assignments: list[list[int]] = []
        self.comparisons: list[list[float]] = []
        self.forward_passes, self.seconds = 0, 0.0

    def score(self, rows: Sequence[Record]) -> list[float]:
        """One reliability score in [0, 1] per row (`prompt`, `response`)."""
        started, passes = time.perf_counter(), self.scorer.forward_passes
        self.assignments = assign_references(rows, self.bank, self.references, self.seed)
        pairs = [(t, r) for t, refs in enumerate(self.assignments) for r in refs]
        p_same = self._ask(rows, pairs, swapped=False)
        if self.swap:
            swapped = self._ask(rows, pairs, swapped=True)
            p_same = {key: (p + swapped[key]) / 2 for key, p in p_same.items()}
        self.comparisons = [[p_same[(t, r)] for r in refs] for t, refs in enumerate(self.assignments)]
        scores = [
            vote(probs, [bool(self.bank[r]["correct"]) for r in refs], self.weights)
            for probs, refs in zip(self.comparisons, self.assignments, strict=True)
        ]
        self.forward_passes = self.scorer.forward_passes - passes
        self.seconds = time.perf_counter() - started
        return scores

    def _ask(self, rows: Sequence[Record], pairs: list[tuple[int, int]], *, swapped: bool) -> dict:
        """P(same label) per (target, reference) pair, comparisons grouped by their shared prefix."""
        prompts = (
            ((t, r), *comparison_prompts(rows[t], self.bank[r], self.template, swapped=swapped, preamble=self.preamble))
            for t, r in pairs
        )
        return score_keyed(self.scorer, prompts, reuse_cache=self.reuse_cache, progress=self.progress)

    def log_rows(self, rows: Sequence[Record]) -> list[Record]:
        """Which references judged which target, and how, after `score`: one record per target."""
        return [
            {
                "id": row.get("id"),
                "sample": row.get("sample"),
                "references": refs,
                "reference_correct": [bool(self.bank[r]["correct"]) for r in refs],
                "p_same": probs,
            }
            for row, refs, probs in zip(rows, self.assignments, self.comparisons, strict=True)
        ]
