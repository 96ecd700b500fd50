"""Selection: keep the judged responses worth training on, and turn them into SFT examples.

This is the rejection-sampling step of STaR / RFT-style self-training (Zelikman et al. 2022; Yuan et al.
2023): responses the judge accepts become supervised targets, deduplicated (exactly or nearly) and capped
per prompt so a few easy prompts cannot dominate a round's training set. Two options go beyond
thresholds: diversity-first selection (Diversify and Conquer, Yu et al. 2024: k-means over sentence
embeddings, one row per cluster) and a share of real (gold) examples mixed into every round, which keeps
self-training on its own output from collapsing (Shumailov et al. 2024; Gerstgrasser et al. 2024).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from prefect import task

from configs.schema import CampaignConfig, SelectConfig
from tasks.judging.verifier import shows_work, stated_answer
from tasks.layout import RESUMABLE
from tasks.prompts import gold_prompts
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RoundContext
from tasks.tracking_store import client_for


def select(
    rows: Sequence[Record],
    *,
    threshold: float,
    best_of_k: bool,
    max_per_prompt: int,
    dedupe: bool,
    near_duplicate: float | None = None,
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
        near_duplicate: Also drop a response whose trigram Jaccard similarity (`text_similarity`) to a
            kept one of the same prompt is at least this; None: exact duplicates only.

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
            if near_duplicate is not None and any(text_similarity(text, other) >= near_duplicate for other in seen):
                continue
            seen.add(text)
            kept.append(dict(row))
            if len(kept) == limit:
                break
        selected.extend(kept)
    return selected


N_INIT = 4  # seeded k-means starts; the lowest inertia wins


def select_by(rows: Sequence[Record], cfg: SelectConfig) -> list[Record]:
    """`select` with a campaign's `select` settings (threshold, best-of-k, cap, dedupe, near-duplicates)."""
    return select(
        rows,
        threshold=cfg.threshold,
        best_of_k=cfg.best_of_k,
        max_per_prompt=cfg.max_per_prompt,
        dedupe=cfg.dedupe,
        near_duplicate=cfg.near_duplicate,
    )


def _trigrams(text: str) -> set[str]:
    normal = " ".join(text.lower().split())
    return {normal[i : i + 3] for i in range(max(len(normal) - 2, 1))}


def text_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the character trigrams of two texts (case and spacing ignored), in [0, 1].

    The shingle overlap behind MinHash near-duplicate detection (Broder 1997), computed exactly: the
    sets here are a few responses per prompt.
    """
    left, right = _trigrams(a), _trigrams(b)
    return len(left & right) / len(left | right) if left | right else 1.0


def kmeans(points: np.ndarray, k: int, *, seed: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's k-means (k-means++ seeding, Arthur and Vassilvitskii 2007; the best of `N_INIT` seeded
    starts), deterministic for a seed.

    Args:
        points: `(n, d)` array.
        k: Clusters wanted; capped at the number of distinct points.
        seed: Seeds the k-means++ draws.
        iterations: Most Lloyd iterations per start.

    Returns:
        `(labels, centroids)`: the cluster of every point (`(n,)`) and the centroids (`(k', d)`, k' <= k).
    """
    from sklearn.cluster import KMeans  # imported here: ~1 s, and only diversity selection needs it

    data = np.asarray(points, dtype=np.float64)
    k = min(k, len(np.unique(data, axis=0)))
    fitted = KMeans(n_clusters=k, n_init=N_INIT, max_iter=iterations, random_state=seed).fit(data)
    return fitted.labels_, fitted.cluster_centers_


def diverse_indices(points: np.ndarray, k: int, *, seed: int) -> list[int]:
    """One point per k-means cluster: the member nearest its centroid (ties: the lowest index).

    Returns:
        Indices into `points`, ascending; all of them when there are at most `k` points.
    """
    if len(points) <= k:
        return list(range(len(points)))
    labels, centres = kmeans(points, k, seed=seed)
    chosen = []
    for c in range(len(centres)):
        members = np.flatnonzero(labels == c)
        if len(members):
            dist = ((np.asarray(points, dtype=np.float64)[members] - centres[c]) ** 2).sum(-1)
            chosen.append(int(members[np.argmin(dist)]))
    return sorted(chosen)


def gold_rows(
    prompt_rows: Sequence[Record], count: int, *, seed: int, answer_pattern: str | None = None
) -> list[Record]:
    """Real training examples for `count` of the round's prompts, drawn without replacement.

    The target is the prompt's worked `solution` (arithmetic), else " The answer is {answer}." (the
    few-shot format; file prompts). Prompts with neither are skipped.

    Args:
        prompt_rows: The round's prompt, generated or judged rows (repeats of an `id` count once).
        count: Gold rows wanted (fewer when fewer prompts have a target).
        seed: Seeds the draw.
        answer_pattern: Under `judge.require_work`, the answer form: a prompt whose target does not show right
            working (`shows_work`; a file row with only an answer, " The answer is N.") is skipped before the draw,
            as a sample saying only that would be refused, so `count` rows come from the prompts that have one.

    Returns:
        Rows `{"id", "prompt", "answer", "response", "score": 1.0, "sample": -1, "source": "gold"}`.
    """
    targets: dict[str, tuple[Record, str]] = {}
    for row in prompt_rows:
        if row["id"] in targets or not (row.get("solution") or row.get("answer") is not None):
            continue
        target = row.get("solution") or stated_answer(row["answer"])
        if answer_pattern is None or shows_work(target, answer_pattern):
            targets[row["id"]] = (row, target)
    ids = sorted(targets)
    random.Random(seed).shuffle(ids)
    out = []
    for pid in ids[: max(count, 0)]:
        row, target = targets[pid]
        out.append(
            {"id": pid, "prompt": row["prompt"], "answer": row.get("answer"), "response": target}
            | {"score": 1.0, "sample": -1, "source": "gold"}
        )
    return out


def gold_draw(config: CampaignConfig) -> Callable[..., list[Record]]:
    """`gold_rows` as `config` draws gold targets, for the gold rows of training and the filters' target sets
    alike: under `judge.require_work` (`CampaignConfig.requires_work`) only targets that show right working."""
    return functools.partial(gold_rows, answer_pattern=config.judge.answer_pattern if config.requires_work else None)


def gold_count(selected: int, share: float) -> int:
    """Gold rows to add to `selected` self-generated rows so that gold makes up `share` of the mix."""
    return round(share * selected / (1.0 - share)) if share > 0 else 0


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
        `rows` kept, `prompts_covered` (distinct prompts with a kept row), `share_of_judged`
        (self-generated rows kept / judged; NaN when nothing was judged) and `gold_rows` (real examples).
    """
    gold = sum(1 for row in selected if row.get("source") == "gold")
    return {
        "rows": float(len(selected)),
        "prompts_covered": float(len({row["id"] for row in selected})),
        "share_of_judged": (len(selected) - gold) / len(judged) if judged else math.nan,
        "gold_rows": float(gold),
    }


def judged_table(judged: Sequence[Record], selected: Sequence[Record], threshold: float) -> dict[str, list]:
    """The round's judged samples as a column table for `MlflowClient.log_table`: `id`, `sample`, `prompt`,
    `response`, `score`, `kept` (the row is among `selected`, matched on id, sample and response) and `reason`.

    Args:
        judged: The judged rows, in file order.
        selected: The rows selection kept (gold rows, not being judged samples, match none).
        threshold: Selection's threshold, for the reason of a row scored below it.
    """
    kept = {(row["id"], row.get("sample"), row["response"]) for row in selected}
    columns: dict[str, list] = {name: [] for name in ("id", "sample", "prompt", "response", "score", "kept", "reason")}
    for row in judged:
        chosen = (row["id"], row.get("sample"), row["response"]) in kept
        if chosen:
            reason = "kept"
        elif row["score"] < threshold:
            reason = f"score below the threshold {threshold:g}"
        else:
            reason = "dropped: a duplicate, over the per-prompt cap, or not chosen for diversity"
        values = (row["id"], row.get("sample"), row["prompt"], row["response"], row["score"], chosen, reason)
        for name, value in zip(columns, values, strict=True):
            columns[name].append(value)
    return columns


JUDGED_TABLE = "samples/judged.json"  # the round run's table of judged samples in the MLflow UI (Evaluation tab)


@task(name="select", **RESUMABLE)
def select_task(
    config: CampaignConfig, judged: DatasetRef, out_path: str, ctx: RoundContext, policy: ModelRef | None = None
) -> DatasetRef:
    """Keep the rows the selection rules allow (then the configured filters' share, the most diverse, plus gold
    rows, if configured), write `selected.jsonl`, log `select/*` metrics and the data. With `select.filters`,
    every judged row is scored first (the base model and `policy` as `tasks.filters` needs them) and
    `filter-scores.jsonl` beside the selected rows holds every judged row's scores and whether it was kept."""
    judged_rows = read_records(judged)
    cfg = config.select
    seed = ctx.seed
    draw = gold_draw(config)
    if cfg.filters:
        from tasks.base_model import prepare_base
        from tasks.filters import score_round

        start = policy or prepare_base(config)  # the round's policy; its `base` is the fixed reference model
        judged_rows = score_round(
            judged_rows,
            cfg.filters,
            template=config.prompts.template,
            base=start.base,
            policy=(start.base, start.adapter),
            seed=seed,
            draw=draw,
        )
    rows = select_by(judged_rows, cfg)
    if cfg.filters:
        from tasks.filters import apply_filters, judge_stage

        rows = apply_filters(judge_stage(rows, cfg.threshold), cfg.filters, seed=seed)
        kept = {(row["id"], row.get("sample"), row["response"]) for row in rows}
        scores = [row | {"kept": (row["id"], row.get("sample"), row["response"]) in kept} for row in judged_rows]
        write_records(Path(out_path).with_name("filter-scores.jsonl"), scores)
        ctx.log_artifact(Path(out_path).with_name("filter-scores.jsonl"), "data")
    if cfg.diversity == "kmeans" and len(rows) > cfg.diversity_clusters:
        from models.embeddings import embed  # loads the embedding model only when diversity is on

        vectors = embed([f"{row['prompt']}\n{row['response']}" for row in rows])
        rows = [rows[i] for i in diverse_indices(vectors, cfg.diversity_clusters, seed=seed)]
    rows += draw(judged_rows, gold_count(len(rows), cfg.gold_share), seed=seed)
    if cfg.gold_examples and (cfg.gold_rounds is None or ctx.round <= cfg.gold_rounds):
        rows += draw(gold_prompts(config, cfg.gold_examples), cfg.gold_examples, seed=seed)
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), judged=judged, select=cfg, seed=seed)
    ctx.log_metrics({f"select/{k}": v for k, v in select_summary(rows, judged_rows).items()})
    ctx.log_dataset(ref, name=f"round-{ctx.round}-selected", context="selected")
    client = client_for(ctx.tracking)
    if not client.list_artifacts(ctx.run_id, "samples"):  # log_table appends: a re-run must not add the rows twice
        client.log_table(ctx.run_id, data=judged_table(judged_rows, rows, cfg.threshold), artifact_file=JUDGED_TABLE)
    return ref
