"""Selection: keep the judged responses worth training on, and turn them into SFT examples.

This is the rejection-sampling step of STaR / RFT-style self-training (Zelikman et al. 2022; Yuan et al.
2023): responses the judge accepts become supervised targets, deduplicated and capped per prompt so a
few easy prompts cannot dominate a round's training set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from configs.schema import CampaignConfig
from tasks.records import DatasetRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RunContext


def select(
    rows: Sequence[Record], *, threshold: float, best_of_k: bool, max_per_prompt: int, dedupe: bool
) -> list[Record]:
    """The judged rows that survive into training, grouped by prompt.

    A row survives when its score is at least `threshold`. Within a prompt, rows rank by score
    (highest first), ties by `sample` index (lowest first, then input order); with `dedupe` a
    response whose stripped text equals an already kept one for that prompt is dropped before the cap,
    so duplicates do not use up slots. `best_of_k` keeps one row per prompt, else at most `max_per_prompt`.

    Args:
        rows: Judged records (`id`, `sample`, `response`, `score`, ...).
        threshold: Lowest score kept.
        best_of_k: Keep only the best row per prompt.
        max_per_prompt: Most rows kept per prompt.
        dedupe: Drop repeated responses within a prompt.

    Returns:
        Copies of the kept rows: prompts in first-seen order, each prompt's rows in rank order.

    Raises:
        ValueError: if `max_per_prompt` is below 1.
    """
    if max_per_prompt < 1:
        raise ValueError(f"max_per_prompt must be >= 1, not {max_per_prompt}")
    limit = 1 if best_of_k else max_per_prompt
    by_prompt: dict[str, list[Record]] = {}  # dicts keep insertion order: first-seen prompt order
    for row in rows:
        if row["score"] >= threshold:
            by_prompt.setdefault(row["id"], []).append(row)

    selected: list[Record] = []
    for candidates in by_prompt.values():
        # sorted() is stable, so rows equal in score and sample keep their input order.
        ranked = sorted(candidates, key=lambda row: (-row["score"], row.get("sample", 0)))
        kept: list[Record] = []
        seen: set[str] = set()
        for row in ranked:
            text = row["response"].strip()
            if dedupe and text in seen:
                continue
            seen.add(text)
            kept.append(dict(row))
            if len(kept) == limit:
                break
        selected.extend(kept)
    return selected


def to_sft_examples(rows: Sequence[Record], template: str) -> list[dict[str, str]]:
    """Selected rows as TRL prompt-completion examples.

    The prompt is rendered with the same template used for generation, so training conditions on
    exactly the text the response was sampled from.

    Args:
        rows: Selected records (`prompt`, `response`).
        template: The prompt template, holding `{prompt}`.

    Returns:
        `{"prompt": template.format(prompt=...), "completion": response}` per row, in row order.
    """
    return [{"prompt": template.format(prompt=row["prompt"]), "completion": row["response"]} for row in rows]


def select_summary(selected: Sequence[Record], judged: Sequence[Record]) -> dict[str, float]:
    """Round metrics of selection (log under `select/`).

    Args:
        selected: The rows `select` kept.
        judged: The rows it chose from.

    Returns:
        `rows` kept, `prompts_covered` (distinct prompts with a kept row) and `share_of_judged`
        (kept / judged; NaN when nothing was judged).
    """
    return {
        "rows": float(len(selected)),
        "prompts_covered": float(len({row["id"] for row in selected})),
        "share_of_judged": len(selected) / len(judged) if judged else math.nan,
    }


@task(name="select", cache_policy=NO_CACHE)
def select_task(config: CampaignConfig, judged: DatasetRef, out_path: str, ctx: RunContext) -> DatasetRef:
    """Keep the rows the selection rules allow, write `selected.jsonl`, log `select/*` metrics and the data."""
    judged_rows = read_records(judged)
    cfg = config.select
    rows = select(
        judged_rows,
        threshold=cfg.threshold,
        best_of_k=cfg.best_of_k,
        max_per_prompt=cfg.max_per_prompt,
        dedupe=cfg.dedupe,
    )
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), judged=judged, select=cfg)
    ctx.log_metrics({f"select/{k}": v for k, v in select_summary(rows, judged_rows).items()})
    ctx.log_dataset(ref, name=f"round-{ctx.step}-selected", context="selected")
    return ref
