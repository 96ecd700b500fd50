"""The seed data filters (tasks/filters.py): each score equals a value computed by hand or by a plain forward pass,
filters compose in list order, and bad input is a one-line error naming the field."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

from configs.loader import ConfigError, load_config
from configs.schema_filters import ColorFilter, ConfidenceFilter, DsirFilter, PerplexityFilter
from models.loading import load_policy
from models.sequence_scorer import tune_lora
from tasks.filters import (
    ModelLogprobs,
    agreement,
    apply_filters,
    decide,
    dsir_log_weights,
    filter_scores,
    gumbel_top_k,
    judge_stage,
    keep_count,
)
from tasks.select import gold_rows

TEMPLATE = "Question: {prompt}\nAnswer:"
ROWS: list[dict[str, Any]] = [
    {"id": "a", "sample": 0, "prompt": "What is 2 plus 3?", "response": " 2 + 3 = 5. The answer is 5.", "score": 1.0},
    {"id": "a", "sample": 1, "prompt": "What is 2 plus 3?", "response": " The answer is 6.", "score": 0.0},
    {"id": "b", "sample": 0, "prompt": "What is 7 minus 4?", "response": " 7 - 4 = 3.", "score": 1.0},
]
GOLD = {"solution": " 2 + 3 = 5. The answer is 5."}


def plain_logprobs(model: torch.nn.Module, tokenizer, prompt: str, response: str) -> list[float]:
    """Log-probabilities of the response tokens from one unpadded forward pass over the whole text."""
    start = len(tokenizer(prompt)["input_ids"])
    ids = torch.tensor([tokenizer(prompt + response)["input_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return [float(logps[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])]


def test_perplexity_and_policy_log_prob_equal_a_plain_forward_pass(tiny_dir: Path) -> None:
    scored = filter_scores(
        ROWS,
        [PerplexityFilter(), ConfidenceFilter()],
        template=TEMPLATE,
        seed=0,
        draw=gold_rows,
        models=ModelLogprobs(str(tiny_dir), (str(tiny_dir), None), batch_size=2),  # padding within a batch
    )
    model, tokenizer = load_policy(str(tiny_dir))
    for row, got in zip(ROWS, scored, strict=True):
        logps = plain_logprobs(model, tokenizer, TEMPLATE.format(prompt=row["prompt"]), row["response"])
        assert got["filters"]["perplexity"] == pytest.approx(math.exp(-sum(logps) / len(logps)), rel=1e-4)
        assert got["filters"]["mean_logprob"] == pytest.approx(sum(logps) / len(logps), abs=1e-4)
    assert [row["filters"]["agreement"] for row in scored] == [0.5, 0.5, 1.0]


def test_color_is_prior_loss_minus_tuned_loss(tiny_dir: Path) -> None:
    rows = [row | GOLD for row in ROWS]
    cfg = ColorFilter(target_size=2, steps=3, learning_rate=1e-2, lora_r=4)
    scored = filter_scores(
        rows,
        [cfg],
        template=TEMPLATE,
        seed=5,
        draw=gold_rows,
        models=ModelLogprobs(str(tiny_dir), (str(tiny_dir), None)),
    )
    # The same tuning by hand: the target is the two prompts' gold solutions (drawn with seed 5 + 0, sorted ids).
    prior, tokenizer = load_policy(str(tiny_dir))
    fresh, _ = load_policy(str(tiny_dir))
    drawn = gold_rows(rows, 2, seed=5)
    targets = [(TEMPLATE.format(prompt=t["prompt"]), t["response"]) for t in drawn]
    tuned = tune_lora(fresh, tokenizer, *zip(*targets, strict=True), steps=3, learning_rate=1e-2, r=4, seed=5)
    for row, got in zip(rows, scored, strict=True):
        prompt = TEMPLATE.format(prompt=row["prompt"])
        before = plain_logprobs(prior, tokenizer, prompt, row["response"])
        after = plain_logprobs(tuned, tokenizer, prompt, row["response"])
        expected = -sum(before) / len(before) + sum(after) / len(after)
        assert got["filters"]["color"] == pytest.approx(expected, abs=1e-4)
    assert scored[0]["filters"]["color"] > 0  # the target's own solution became likelier
    assert len({round(row["filters"]["color"], 6) for row in scored}) == 3


def test_dsir_weights_by_hand() -> None:
    buckets = 32
    grams = ["a", "b", "a b", "c"]
    assert len({zlib.crc32(g.encode()) % buckets for g in grams}) == 4  # no collisions: the sums below hold
    # Pool counts: a, b, "a b" once each, c once (4 grams); target: a, b, "a b" (3 grams); add-one smoothing.
    log_ratio_ab = math.log((1 + 1) / (buckets + 3)) - math.log((1 + 1) / (buckets + 4))
    log_ratio_c = math.log(1 / (buckets + 3)) - math.log((1 + 1) / (buckets + 4))
    got = dsir_log_weights(["A b", "c"], ["a b"], buckets)
    assert got == pytest.approx([3 * log_ratio_ab, log_ratio_c])
    with pytest.raises(ValueError, match="target set is empty"):
        dsir_log_weights(["a"], [], buckets)


def test_gumbel_top_k_is_seeded_and_follows_the_weights() -> None:
    weights = [0.0, 50.0, 0.0, 49.0, 0.0]
    assert gumbel_top_k(weights, 2, seed=3) == [1, 3]
    draws = {tuple(gumbel_top_k([0.0] * 6, 3, seed=s)) for s in range(20)}
    assert len(draws) > 1 and gumbel_top_k([0.0] * 6, 3, seed=7) == gumbel_top_k([0.0] * 6, 3, seed=7)


def test_agreement_counts_the_prompts_samples() -> None:
    rows = [{"id": "p", "response": r} for r in (" so 3. The answer is 3.", " answer is 3", " 4", " none")]
    rows.append({"id": "q", "response": " The answer is 3."})
    assert agreement(rows) == [0.5, 0.5, 0.25, 0.0, 1.0]


def scripted(values: dict[str, list[float | None]]) -> list[dict]:
    n = len(next(iter(values.values())))
    return [
        {"id": str(i), "sample": 0, "response": str(i), "score": 1.0, "filters": {k: v[i] for k, v in values.items()}}
        for i in range(n)
    ]


def test_keep_counts_and_the_automatic_confidence_cut() -> None:
    assert [keep_count(n, 0.5) for n in (0, 1, 3, 4)] == [0, 1, 2, 2] and keep_count(7, 1.0) == 7
    rows = scripted({"agreement": [1.0, 0.5, 1.0, 0.25], "mean_logprob": [-0.1, -0.2, -0.9, None]})
    # Medians: agreement 0.75, mean log-prob -0.2 (of the three known): only row 0 is at least both.
    assert decide(ConfidenceFilter(), rows, seed=0).kept == [0]
    assert decide(ConfidenceFilter(share=0.5), rows, seed=0).kept == [0, 2]


def test_filters_compose_in_list_order_and_record_why() -> None:
    rows = judge_stage(scripted({"perplexity": [1.0, 2.0, 3.0, 4.0], "color": [0.0, 1.0, 2.0, 3.0]}), 0.5)
    first = apply_filters(rows, [PerplexityFilter(share=0.5), ColorFilter(share=0.5)], seed=0)
    second = apply_filters(rows, [ColorFilter(share=0.5), PerplexityFilter(share=0.5)], seed=0)
    assert [r["id"] for r in first] == ["1"] and [r["id"] for r in second] == ["2"]
    assert first[0]["kept_by"] == ["judge", "perplexity", "color"]
    assert first[0]["reason"].startswith("judge score 1 >= 0.5; perplexity 2 (lowest 50% of 4, cut 2); ")
    assert "loss reduction 1 (top 50% of 2)" in first[0]["reason"]
    assert first[0]["filters"] == {"perplexity": 2.0, "color": 1.0}


def test_a_kinds_name_alone_is_that_filter_with_its_defaults() -> None:
    config = load_config("tiny", ["select.filters=[perplexity, {kind: dsir, share: 0.3}]"])
    assert config.select.filters == [PerplexityFilter(), DsirFilter(share=0.3)]


def test_bad_filter_input_names_the_field() -> None:
    for override, field in [
        ("select.filters=[{kind: perplexity, share: 0}]", r"select\.filters\.0\.perplexity\.share"),
        ("select.filters=[{kind: dsir}, {kind: color, share: 1.5}]", r"select\.filters\.1\.color\.share"),
        ("select.filters=[{kind: dsir, target_size: 0}]", r"select\.filters\.0\.dsir\.target_size"),
        ("select.filters=[{kind: confidence, share: 1.01}]", r"select\.filters\.0\.confidence\.share"),
        ("select.filters=[{kind: perplexity}, {kind: dsir, share: -0.5}]", r"select\.filters\.1\.dsir\.share"),
        ("select.filters=[{kind: entropy}]", r"select\.filters\.0: kind must be one of"),
        ("select.filters=[entropy]", r"select\.filters\.0: kind must be one of"),
    ]:
        with pytest.raises(ConfigError, match=field):
            load_config("tiny", [override])
    empty = r"^select\.filters\.0\.target_size: the target set is empty: none of the round's 1 training prompts has"
    with pytest.raises(ValueError, match=empty):
        filter_scores([{**ROWS[0], "answer": None}], [DsirFilter()], template=TEMPLATE, seed=0, draw=gold_rows)
