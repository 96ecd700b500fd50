"""The seed papers' data filters as selection options: score every judged row, then keep a part of the survivors.

Four filters, each scoring a row without its reference answer (the verifier only evaluates):

- perplexity (POINTS, Liu et al. 2024): the response's perplexity under a FIXED reference model, the campaign's
  base model (never the moving policy, whose own samples would all look likely); keep the lowest `share`.
- confidence (CLEAR): `agreement`, the share of the prompt's k samples stating the same final answer (read
  leniently: the last "answer is N", else the last number), and `mean_logprob`, the policy's mean token
  log-probability of the response; the automatic cut keeps a row when both are at least their medians over
  the filter's input, or a `share` ranked by agreement then mean log-probability.
- color (CoLoR-Filter, Brandfonbrener et al. 2024): mean token loss under the prior (the base model) minus mean
  token loss under the prior tuned briefly (a LoRA, `steps` steps) on a target set of gold solutions from the
  training split; keep the top `share` (the rows the target-tuned model learnt to like most).
- dsir (DSIR, Xie et al. 2023): hashed unigram and bigram counts of the response; a row's log importance weight
  is sum over its features of count x (log p_target - log p_pool), both bag-of-ngram distributions add-one
  smoothed over the buckets, the pool being all of the round's judged responses; `share` is resampled without
  replacement with probability proportional to exp(weight) (Gumbel top-k, seeded).

Scores go into each row's `filters` (by name); the rows kept carry `kept_by` (the stages that kept them) and
`reason` (why, one clause per stage). The scoring functions are pure on numbers and texts; the models they need
are loaded by `filter_scores` (`models.sequence_scorer`).
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from configs.schema_filters import ColorFilter, ConfidenceFilter, DsirFilter, FilterConfig, PerplexityFilter
from tasks.judging.verifier import lenient_answer
from tasks.records import Record


def keep_count(n: int, share: float) -> int:
    """How many of `n` rows a share keeps: rounded up (at least one row of a non-empty input), at most `n`."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], not {share}")
    return min(n, math.ceil(share * n - 1e-9))


def perplexity(logprobs: Sequence[float]) -> float | None:
    """exp(mean negative log-likelihood) of a response's tokens; None for a response without tokens."""
    return math.exp(-sum(logprobs) / len(logprobs)) if logprobs else None


def mean_logprob(logprobs: Sequence[float]) -> float | None:
    """Mean token log-probability of a response; None for a response without tokens."""
    return sum(logprobs) / len(logprobs) if logprobs else None


def color_score(prior: Sequence[float], tuned: Sequence[float]) -> float | None:
    """CoLoR-Filter's conditional loss reduction: mean token loss under the prior minus under the tuned prior."""
    if not prior or not tuned:
        return None
    return -sum(prior) / len(prior) + sum(tuned) / len(tuned)


def agreement(rows: Sequence[Record]) -> list[float]:
    """Per row, the share of its prompt's rows (same `id`, itself included) whose lenient final answer equals its
    own; 0 for a row that states no number at all."""
    answers = [lenient_answer(row["response"]) for row in rows]
    by_prompt: dict[str, Counter[str | None]] = {}
    for row, answer in zip(rows, answers, strict=True):
        by_prompt.setdefault(row["id"], Counter())[answer] += 1
    return [
        0.0 if answer is None else by_prompt[row["id"]][answer] / sum(by_prompt[row["id"]].values())
        for row, answer in zip(rows, answers, strict=True)
    ]


def ngram_features(text: str, buckets: int) -> Counter[int]:
    """Hashed unigram and bigram counts of a text's lower-cased words (CRC-32, stable across processes)."""
    words = text.lower().split()
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return Counter(zlib.crc32(gram.encode("utf-8")) % buckets for gram in grams)


def dsir_log_weights(pool: Sequence[str], target: Sequence[str], buckets: int) -> list[float]:
    """DSIR's log importance weight of each pool text toward `target`: sum over its hashed n-grams of
    count x (log p_target(bucket) - log p_pool(bucket)), each distribution add-one smoothed over `buckets`.

    Raises:
        ValueError: if the target set is empty.
    """
    if not target:
        raise ValueError("the DSIR target set is empty")
    features = [ngram_features(text, buckets) for text in pool]

    def log_distribution(counts: Sequence[Counter[int]]) -> np.ndarray:
        total = np.ones(buckets)
        for count in counts:
            for bucket, n in count.items():
                total[bucket] += n
        return np.log(total / total.sum())

    log_ratio = log_distribution([ngram_features(text, buckets) for text in target]) - log_distribution(features)
    return [float(sum(n * log_ratio[b] for b, n in f.items())) for f in features]


def gumbel_top_k(log_weights: Sequence[float], k: int, *, seed: int) -> list[int]:
    """Indices of `k` items drawn without replacement with probability proportional to exp(weight): the top k of
    weight + Gumbel noise (Vieira's Gumbel-top-k trick), seeded; ascending."""
    noise = np.random.default_rng(seed).gumbel(size=len(log_weights))
    keys = np.asarray(log_weights, dtype=np.float64) + noise
    return sorted(int(i) for i in np.argsort(-keys, kind="stable")[:k])


@dataclass(frozen=True)
class Decision:
    """A filter's verdict on its input rows: the kept positions and one reason per kept row."""

    kept: list[int]
    reasons: dict[int, str]


def _ranked(values: Sequence[float | None], share: float, *, lowest: bool) -> list[int]:
    """Positions of the `keep_count` best values (None last), ties by position."""
    worst = math.inf if lowest else -math.inf
    keys = [(worst if v is None else v) * (1 if lowest else -1) for v in values]
    order = sorted(range(len(values)), key=lambda i: (keys[i], i))
    return sorted(order[: keep_count(len(values), share)])


def _show(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def decide(cfg: FilterConfig, rows: Sequence[Record], *, seed: int) -> Decision:
    """Which of `rows` (each holding its scores in `filters`) the filter keeps, and why.

    Args:
        cfg: One `select.filters` entry.
        rows: The filter's input, scored by `filter_scores`.
        seed: Seeds DSIR's draw.
    """
    if not rows:
        return Decision([], {})
    n, scores = len(rows), [row["filters"] for row in rows]
    if isinstance(cfg, PerplexityFilter):
        values = [s["perplexity"] for s in scores]
        kept = _ranked(values, cfg.share, lowest=True)
        cut = max((v for v in (values[i] for i in kept) if v is not None), default=None)
        why = f"lowest {cfg.share:.0%} of {n}, cut {_show(cut)}"
        return Decision(kept, {i: f"perplexity {_show(values[i])} ({why})" for i in kept})
    if isinstance(cfg, ConfidenceFilter):
        agree, logp = [s["agreement"] for s in scores], [s["mean_logprob"] for s in scores]
        if cfg.share is not None:
            keys = [None if lp is None else a * 1e6 + lp for a, lp in zip(agree, logp, strict=True)]
            kept = _ranked(keys, cfg.share, lowest=False)
            why = f"top {cfg.share:.0%} of {n} by agreement, then mean log-prob"
        else:
            known = [lp for lp in logp if lp is not None]
            agree_cut, logp_cut = statistics.median(agree), statistics.median(known) if known else math.inf
            kept = [i for i in range(n) if agree[i] >= agree_cut and logp[i] is not None and logp[i] >= logp_cut]
            why = f"both at least their medians over {n}: {agree_cut:.4g} and {logp_cut:.4g}"
        return Decision(kept, {i: f"agreement {agree[i]:.4g}, mean log-prob {_show(logp[i])} ({why})" for i in kept})
    if isinstance(cfg, ColorFilter):
        values = [s["color"] for s in scores]
        kept = _ranked(values, cfg.share, lowest=False)
        return Decision(kept, {i: f"loss reduction {_show(values[i])} (top {cfg.share:.0%} of {n})" for i in kept})
    values = [s["dsir"] for s in scores]
    k = keep_count(n, cfg.share)
    kept = gumbel_top_k(values, k, seed=seed)
    return Decision(kept, {i: f"log importance weight {values[i]:.4g} (drawn {k} of {n}, seed {seed})" for i in kept})


def apply_filters(rows: Sequence[Record], filters: Sequence[FilterConfig], *, seed: int) -> list[Record]:
    """Run `filters` in order, each on what the one before kept; the kept rows (copies, input order) gain the
    filter's name in `kept_by` and its clause in `reason` (joined by "; " after any earlier stage's)."""
    current = [dict(row) for row in rows]
    for index, cfg in enumerate(filters):
        decision = decide(cfg, current, seed=seed + index)
        for i in decision.kept:
            row = current[i]
            row["kept_by"] = [*row.get("kept_by", []), cfg.kind]
            row["reason"] = "; ".join(part for part in (row.get("reason"), decision.reasons[i]) if part)
        current = [current[i] for i in decision.kept]
    return current


GoldDraw = Callable[..., list[Record]]  # `tasks.select.gold_draw`: (prompt_rows, count, *, seed) -> gold rows
# What the draw counts, for the errors: under judge.require_work a target must show right working.
GOLD_TARGET = (
    "a gold target (a `solution` or an `answer`; under judge.require_work, a `solution` showing right working)"
)


def target_set(prompt_rows: Sequence[Record], size: int, *, seed: int, field: str, draw: GoldDraw) -> list[Record]:
    """The target set of `color` and `dsir`: gold solutions of `size` training prompts drawn by `draw`
    (`tasks.select.gold_draw`, the one owner of "a prompt's gold target", passed in by selection), raising a
    one-line error naming `field` and the round's prompt count when no prompt has one."""
    rows = draw(prompt_rows, size, seed=seed)
    if not rows:
        prompts = len({row["id"] for row in prompt_rows})
        raise ValueError(
            f"{field}: the target set is empty: none of the round's {prompts} training prompts has {GOLD_TARGET}"
        )
    return rows


def check_target_source(
    filters: Sequence[FilterConfig], prompt_rows: Sequence[Record], source: str, draw: GoldDraw
) -> None:
    """Refuse, before a campaign starts, filters whose target set could never be drawn: a `color` or `dsir` entry
    when no row of the training split (`prompt_rows`, read from `source`) has a gold solution for `draw`.

    Raises:
        ValueError: one line naming `source`, its row count and the first such filter's field.
    """
    fields = [
        f"select.filters.{i} ({cfg.kind})" for i, cfg in enumerate(filters) if isinstance(cfg, ColorFilter | DsirFilter)
    ]
    if fields and not draw(prompt_rows, 1, seed=0):
        raise ValueError(
            f"{source}: none of its {len(prompt_rows)} training rows has {GOLD_TARGET}, so the target "
            f"set of {fields[0]} would be empty"
        )


class LogprobSource(Protocol):
    """Where the model-based filters get per-token log-probabilities of responses after rendered prompts."""

    def base(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[float]]:
        """Under the fixed reference model (the campaign's base model)."""
        ...

    def policy(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[float]]:
        """Under the round's policy."""
        ...

    def tuned(
        self,
        cfg: ColorFilter,
        target: Sequence[tuple[str, str]],
        seed: int,
        prompts: Sequence[str],
        responses: Sequence[str],
    ) -> list[list[float]]:
        """Under the reference model tuned briefly on the target (prompt, completion) pairs (`tune_lora`)."""
        ...


def filter_scores(
    rows: Sequence[Record],
    filters: Sequence[FilterConfig],
    *,
    template: str,
    seed: int,
    draw: GoldDraw,
    models: LogprobSource | None = None,
) -> list[Record]:
    """Copies of the round's judged rows with every configured filter's scores in `filters`.

    Args:
        rows: All of the round's judged rows (agreement counts every sample of a prompt; DSIR's pool is all of them).
        filters: The `select.filters` entries.
        template: The policy's prompt template (responses are scored after the rendered prompt).
        seed: Seeds the target-set draws (filter i: seed + i) and the CoLoR tuning.
        draw: Draws the gold target rows (`tasks.select.gold_draw`).
        models: The log-probability source; needed by perplexity, confidence and color.

    Returns:
        The rows with `filters`: `perplexity`, `agreement` and `mean_logprob`, `color`, `dsir` as configured.

    Raises:
        ValueError: a target set that is empty (no training prompt has a gold solution), naming its field.
    """
    out = [dict(row) | {"filters": dict(row.get("filters", {}))} for row in rows]
    prompts = [template.format(prompt=row["prompt"]) for row in rows]
    responses = [row["response"] for row in rows]
    for index, cfg in enumerate(filters):
        field = f"select.filters.{index}"
        target: list[Record] = []
        if isinstance(cfg, DsirFilter | ColorFilter):
            target = target_set(rows, cfg.target_size, seed=seed + index, field=f"{field}.target_size", draw=draw)
        if isinstance(cfg, DsirFilter):
            weights = dsir_log_weights(responses, [t["response"] for t in target], cfg.buckets)
            for row, w in zip(out, weights, strict=True):
                row["filters"]["dsir"] = w
            continue
        if models is None:
            raise ValueError(f"{field}: the {cfg.kind} filter needs a model to score with")
        if isinstance(cfg, PerplexityFilter):
            for row, lp in zip(out, models.base(prompts, responses), strict=True):
                row["filters"]["perplexity"] = perplexity(lp)
        elif isinstance(cfg, ConfidenceFilter):
            for row, a, lp in zip(out, agreement(rows), models.policy(prompts, responses), strict=True):
                row["filters"] |= {"agreement": a, "mean_logprob": mean_logprob(lp)}
        else:
            pairs = [(template.format(prompt=t["prompt"]), t["response"]) for t in target]
            prior = models.base(prompts, responses)
            tuned = models.tuned(cfg, pairs, seed + index, prompts, responses)
            for row, p, t in zip(out, prior, tuned, strict=True):
                row["filters"]["color"] = color_score(p, t)
    return out


class ModelLogprobs:
    """`LogprobSource` over the campaign's base model and the round's policy, each loaded on first use."""

    def __init__(self, base: str, policy: tuple[str, str | None], *, batch_size: int = 16) -> None:
        """Args: base: the base model's folder; policy: (base folder, adapter folder or None); batch_size: rows
        per forward pass."""
        self.base_dir, self.policy_dirs, self.batch_size = base, policy, batch_size
        self._loaded: dict[str, tuple[Any, Any]] = {}

    def _load(self, role: str, base: str, adapter: str | None) -> tuple[Any, Any]:
        from models.loading import load_policy

        if role not in self._loaded:
            self._loaded[role] = load_policy(base, adapter)
        return self._loaded[role]

    def base(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[float]]:
        from models.sequence_scorer import response_logprobs

        model, tokenizer = self._load("base", self.base_dir, None)
        return response_logprobs(model, tokenizer, prompts, responses, batch_size=self.batch_size)

    def policy(self, prompts: Sequence[str], responses: Sequence[str]) -> list[list[float]]:
        from models.sequence_scorer import response_logprobs

        model, tokenizer = self._load("policy", *self.policy_dirs)
        return response_logprobs(model, tokenizer, prompts, responses, batch_size=self.batch_size)

    def tuned(
        self,
        cfg: ColorFilter,
        target: Sequence[tuple[str, str]],
        seed: int,
        prompts: Sequence[str],
        responses: Sequence[str],
    ) -> list[list[float]]:
        from models.loading import load_policy
        from models.sequence_scorer import response_logprobs, tune_lora

        model, tokenizer = load_policy(self.base_dir)  # a fresh copy: the LoRA is injected in place
        tuned = tune_lora(
            model,
            tokenizer,
            [p for p, _ in target],
            [c for _, c in target],
            steps=cfg.steps,
            learning_rate=cfg.learning_rate,
            r=cfg.lora_r,
            seed=seed,
        )
        return response_logprobs(tuned, tokenizer, prompts, responses, batch_size=self.batch_size)


def judge_stage(rows: Sequence[Record], threshold: float) -> list[Record]:
    """Copies of the rows the judge's rules (`tasks.select.select`) kept, saying so: `kept_by` ["judge"] and the
    judge's clause in `reason`."""
    return [
        dict(row) | {"kept_by": ["judge"], "reason": f"judge score {row['score']:.4g} >= {threshold:g}"} for row in rows
    ]


def score_round(
    rows: Sequence[Record],
    filters: Sequence[FilterConfig],
    *,
    template: str,
    base: str,
    policy: tuple[str, str | None],
    seed: int,
    draw: GoldDraw,
) -> list[Record]:
    """`filter_scores` with the campaign's base model (`base`) and the round's policy (`policy`: base folder and
    adapter) as the log-probability source, models loaded only when a filter needs them."""
    models = ModelLogprobs(base, policy)
    return filter_scores(rows, filters, template=template, seed=seed, draw=draw, models=models)
