"""Model cascading: prompts whose best policy response the judge distrusts are answered by a stronger model.

Meta Ranking's paper routes queries whose weak-model answer scores as unreliable to a strong model. In
self-training the strong model's (greedy) answer then joins the round's data, so the policy learns the
prompts it could not answer reliably itself; the share of prompts routed is the cost to watch.
"""

from __future__ import annotations

from collections.abc import Sequence

from configs.schema import DEFAULT_ANSWER_PATTERN, CampaignConfig
from models.loading import load_policy
from models.sampling import HFSampler, SamplingEngine
from tasks.base_model import prepare_base
from tasks.judging.verifier import is_correct
from tasks.records import Record

CASCADE_SCORE = 1.0  # the stronger model's answer is trusted: that is what routing to it means


def routed_prompts(rows: Sequence[Record], threshold: float) -> list[str]:
    """Ids of prompts (first-seen order) whose best-scoring response scores below `threshold`."""
    best: dict[str, float] = {}
    for row in rows:
        best[row["id"]] = max(best.get(row["id"], -1.0), float(row["score"]))
    return [prompt_id for prompt_id, score in best.items() if score < threshold]


def cascade_rows(
    rows: Sequence[Record],
    routed: Sequence[str],
    engine: SamplingEngine,
    *,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    seed: int,
    answer_pattern: str = DEFAULT_ANSWER_PATTERN,
) -> list[Record]:
    """One greedy answer from the stronger `engine` per routed prompt, as judged rows.

    Each new row copies its prompt's fields (`id`, `prompt`, `answer`, ...), takes the next free
    `sample` index, `score` 1.0, `source` "cascade", and `correct` from the verifier when an answer exists.
    """
    first: dict[str, Record] = {}
    last_sample: dict[str, int] = {}
    for row in rows:
        first.setdefault(row["id"], row)
        last_sample[row["id"]] = max(last_sample.get(row["id"], -1), int(row.get("sample", 0)))
    wanted = [first[prompt_id] for prompt_id in routed]
    if not wanted:
        return []
    answers = engine.sample(
        [template.format(prompt=row["prompt"]) for row in wanted],
        n=1,
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        batch_size=16,
    )
    out = []
    for row, texts in zip(wanted, answers, strict=True):
        base = {k: v for k, v in row.items() if k not in ("score", "raw_score", "correct", "sample", "response")}
        new = {**base, "sample": last_sample[row["id"]] + 1, "response": texts[0], "score": CASCADE_SCORE}
        new["source"] = "cascade"
        if row.get("answer") is not None:
            new["correct"] = is_correct(texts[0], row["answer"], answer_pattern)
        out.append(new)
    return out


def add_cascade(config: CampaignConfig, judged: list[Record], seed: int) -> tuple[list[Record], int]:
    """Judged rows plus the stronger model's (`judge.cascade.model`) answers to the routed prompts, and how many
    prompts were routed; the stronger model is loaded only when a prompt is routed."""
    cascade = config.judge.cascade
    if cascade is None:
        raise ValueError("judge.cascade: not set, so there is no stronger model to route prompts to")
    routed = routed_prompts(judged, config.select.threshold)
    if not routed:
        return judged, 0
    strong = prepare_base(config.model_copy(update={"model": cascade.model}))
    model, tokenizer = load_policy(strong.base)
    extra = cascade_rows(
        judged,
        routed,
        HFSampler(model, tokenizer),
        template=config.prompts.template,
        max_new_tokens=cascade.max_new_tokens,
        stop=config.generate.stop,
        seed=seed,
        answer_pattern=config.judge.answer_pattern,
    )
    return judged + extra, len(routed)
