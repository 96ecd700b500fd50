"""The pointwise LM judge, and what every LM judge shares: the option tokens read and how a pair is shown.

An LM judge reads a base causal LM's probability of " yes" against " no" after a question about a
(query, response) pair: one forward pass, no generation (about 4-5x cheaper than generating a verdict,
shared NOTES). The pointwise judge asks "Is this answer correct?" after the pair alone; it is the baseline
Meta Ranking (`tasks.judging.meta_ranking`) is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from models.option_scorer import OptionScorer, PrefixGroup, ProgressFn
from tasks.records import Record

OPTIONS = (" yes", " no")


def render_pair(row: Record, template: str) -> str:
    """A (query, response) pair as the policy saw and wrote it: the templated prompt, then the response."""
    return template.format(prompt=row["prompt"]) + row["response"].rstrip()


class PointwiseJudge:
    """The baseline: P(" yes") to "Is this answer correct?" after the pair, one forward pass per batch.

    A `preamble` (worked examples) opens every prompt; its KV cache is computed once for all rows.

    Attributes:
        forward_passes, seconds: Cost of the last `score` call.
    """

    name = "pointwise"

    def __init__(
        self,
        scorer: OptionScorer,
        *,
        template: str,
        preamble: str = "",
        reuse_cache: bool = True,
        progress: ProgressFn | None = None,
    ) -> None:
        """Wrap an option scorer built with `OPTIONS`; `template` is the policy's prompt template."""
        self.scorer, self.template, self.progress = scorer, template, progress
        self.preamble, self.reuse_cache = preamble, reuse_cache
        self.forward_passes, self.seconds = 0, 0.0

    def score(self, rows: Sequence[Record]) -> list[float]:
        """P(yes) per row (`prompt`, `response`)."""
        started, passes = time.perf_counter(), self.scorer.forward_passes
        tails = [f"{render_pair(row, self.template)}\nIs this answer correct? Reply yes or no:" for row in rows]
        reuse = self.reuse_cache and bool(self.preamble)  # an empty prefix has nothing worth caching
        scores = self.scorer.score([PrefixGroup(self.preamble, tails)], reuse_cache=reuse, progress=self.progress)[0]
        self.forward_passes = self.scorer.forward_passes - passes
        self.seconds = time.perf_counter() - started
        return scores
