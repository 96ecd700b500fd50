"""Stability monitors for a round: diversity and length of the generations, judge scores, negative flips.

Loops that retrain on their own output can lose diversity round after round until they collapse
(Shumailov et al. 2024), and an update that raises accuracy can still break items the previous model got
right. Each round logs (under `monitor/`):

- `distinct_<n>`: distinct n-grams over all n-grams of the generations (Li et al. 2016);
- `embedding_similarity`: mean pairwise cosine similarity of a sample of generations (all-MiniLM-L6-v2);
- `response_words`, `response_chars`: mean response length;
- `score_mean`, `score_std`, `score_min`, `score_max`: the judge's scores;
- `negative_flips`, `negative_flip_rate`, `positive_flip_rate`: held-out items the incumbent answered right
  and the candidate answers wrong (and the reverse), MUSCLE (Echterhoff et al. 2024). The rate is over
  items both evaluated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from prefect import task

from configs.schema import CampaignConfig
from tasks.layout import RESUMABLE
from tasks.records import DatasetRef, Record, read_records
from tasks.tracking import RoundContext


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over whitespace tokens of every text (NaN when there are none)."""
    grams = [tuple(words[i : i + n]) for text in texts for words in [text.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def mean_pairwise_similarity(vectors: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of distinct rows of unit-length `vectors` (NaN below two rows)."""
    count = len(vectors)
    if count < 2:
        return math.nan
    total = np.asarray(vectors, dtype=np.float64).sum(axis=0)
    # The sum of all pairwise dot products is |sum|^2; removing the n self-products leaves the distinct pairs.
    return float((total @ total - count) / (count * (count - 1)))


def generation_monitors(rows: Sequence[Record], n: int) -> dict[str, float]:
    """Diversity, length and score statistics of the policy's judged samples (`response`, `score`).

    Rows the stronger model added (`source` "cascade") are left out: they are not the policy's generations.
    """
    rows = [row for row in rows if row.get("source") != "cascade"]
    texts = [row["response"] for row in rows]
    scores = np.array([row["score"] for row in rows], dtype=np.float64)
    return {
        f"distinct_{n}": distinct_n(texts, n),
        "response_words": float(np.mean([len(t.split()) for t in texts])) if texts else math.nan,
        "response_chars": float(np.mean([len(t) for t in texts])) if texts else math.nan,
        "score_mean": float(scores.mean()) if len(scores) else math.nan,
        "score_std": float(scores.std()) if len(scores) else math.nan,
        "score_min": float(scores.min()) if len(scores) else math.nan,
        "score_max": float(scores.max()) if len(scores) else math.nan,
    }


def negative_flips(previous: Sequence[Record], current: Sequence[Record], threshold: float = 0.5) -> dict[str, float]:
    """Compare two evaluations of the same held-out items (joined on `id`; right means `score >= threshold`).

    Returns:
        `negative_flips` (right before, wrong now), `positive_flips` (wrong before, right now), their rates
        over `items` (ids in both evaluations; rates are NaN when there are none).
    """
    before = {row["id"]: row["score"] >= threshold for row in previous}
    now = {row["id"]: row["score"] >= threshold for row in current}
    common = [key for key in now if key in before]
    negative = sum(1 for key in common if before[key] and not now[key])
    positive = sum(1 for key in common if now[key] and not before[key])
    items = len(common)
    return {
        "negative_flips": float(negative),
        "positive_flips": float(positive),
        "negative_flip_rate": negative / items if items else math.nan,
        "positive_flip_rate": positive / items if items else math.nan,
        "items": float(items),
    }


@task(name="monitor", **RESUMABLE)
def monitor_task(
    config: CampaignConfig,
    judged: DatasetRef,
    evaluated: DatasetRef | None,
    incumbent_evaluated: DatasetRef | None,
    ctx: RoundContext,
) -> dict[str, float]:
    """Compute and log `monitor/*` for the round; flips (vs the incumbent's validation answers) only when both
    evaluations are given."""
    rows = [row for row in read_records(judged) if row.get("source") != "cascade"]  # the policy's samples only
    metrics = generation_monitors(rows, config.monitor.distinct_n)
    if config.monitor.embedding_rows > 0 and len(rows) > 1:
        from models.embeddings import embed  # ~10 s to load once per process: only when asked for

        sample = random.Random(ctx.seed).sample(rows, min(config.monitor.embedding_rows, len(rows)))
        metrics["embedding_similarity"] = mean_pairwise_similarity(embed([row["response"] for row in sample]))
    if evaluated is not None and incumbent_evaluated is not None:
        metrics.update(negative_flips(read_records(incumbent_evaluated), read_records(evaluated)))
    ctx.log_metrics({f"monitor/{k}": v for k, v in metrics.items() if not math.isnan(v)})
    return metrics
