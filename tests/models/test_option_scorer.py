"""The option scorer and the LLM judges on the tiny model: exact forward-pass counts, KV reuse that changes
nothing but the cost, and probabilities equal to a plain full forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.loading import load_policy
from models.option_scorer import OptionScorer, PrefixGroup
from tasks.arithmetic import sample_problems
from tasks.judging.lm import OPTIONS, PointwiseJudge
from tasks.judging.meta_ranking import MetaRankingJudge

TEMPLATE = "Question: {prompt}\nAnswer:"


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> tuple:
    """The session's tiny model and tokenizer."""
    return load_policy(str(tiny_dir))


@pytest.fixture(scope="module")
def rows() -> tuple[list[dict], list[dict]]:
    """Four labelled references (two right, two off by one) and six targets, all different prompts."""
    problems = sample_problems(10, split="train", seed=3)
    refs = [
        {
            "prompt": p["prompt"],
            "response": p["solution"] if i % 2 else f" The answer is {int(p['answer']) + 1}.",
            "correct": bool(i % 2),
        }
        for i, p in enumerate(problems[:4])
    ]
    targets = [{"id": str(i), "prompt": p["prompt"], "response": p["solution"]} for i, p in enumerate(problems[4:])]
    return refs, targets


class _Counter:
    """Counts forward calls of the top-level model through a forward hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.calls += 1


def test_meta_ranking_makes_exactly_the_expected_forward_passes(tiny: tuple, rows: tuple) -> None:
    model, tokenizer = tiny
    refs, targets = rows
    counter = _Counter(model)
    try:
        scorer = OptionScorer(model, tokenizer, OPTIONS, batch_size=4)
        # Every target meets all 4 references: per reference 1 prefill + ceil(6 targets / 4) batches.
        judge = MetaRankingJudge(scorer, refs, template=TEMPLATE, references=4)
        judge.score(targets)
        assert counter.calls == judge.forward_passes == 4 * (1 + 2)
        # Swapped order adds, per target, 1 prefill + ceil(4 references / 4) batches.
        counter.calls = 0
        MetaRankingJudge(scorer, refs, template=TEMPLATE, references=4, swap=True).score(targets)
        assert counter.calls == 12 + 6 * (1 + 1)
        # Without reuse: 24 whole prompts in batches of 4.
        counter.calls = 0
        MetaRankingJudge(scorer, refs, template=TEMPLATE, references=4, reuse_cache=False).score(targets)
        assert counter.calls == 6
        counter.calls = 0
        PointwiseJudge(scorer, template=TEMPLATE).score(targets)
        assert counter.calls == 2
    finally:
        counter.handle.remove()


@pytest.mark.parametrize("swap", [False, True])
def test_kv_reuse_gives_the_same_scores(tiny: tuple, rows: tuple, swap: bool) -> None:
    model, tokenizer = tiny
    refs, targets = rows
    scorer = OptionScorer(model, tokenizer, OPTIONS, batch_size=3)  # uneven batches: padding differs too
    reused = MetaRankingJudge(scorer, refs, template=TEMPLATE, references=3, swap=swap, seed=1)
    plain = MetaRankingJudge(scorer, refs, template=TEMPLATE, references=3, swap=swap, seed=1, reuse_cache=False)
    with_cache, without = reused.score(targets), plain.score(targets)
    assert reused.assignments == plain.assignments
    assert with_cache == pytest.approx(without, abs=1e-5)
    for a, b in zip(reused.comparisons, plain.comparisons, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert all(0.0 <= s <= 1.0 for s in with_cache)


def test_option_probability_matches_a_plain_forward_pass(tiny: tuple) -> None:
    model, tokenizer = tiny
    scorer = OptionScorer(model, tokenizer, OPTIONS, batch_size=8)
    prefix, tails = "Question: What is 2 plus 2?\n", ["Answer: 4. Right?", "Answer: 5?"]
    got = scorer.score([PrefixGroup(prefix, tails)])[0]
    for tail, p in zip(tails, got, strict=True):
        ids = torch.tensor([scorer.encode_prefix(prefix) + scorer.encode_tail(tail)])
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        a, b = scorer.option_ids
        assert p == pytest.approx((probs[a] / (probs[a] + probs[b])).item(), abs=1e-5)


def test_options_sharing_a_lead_token_compare_the_first_differing_one(tiny: tuple) -> None:
    model, tokenizer = tiny
    scorer = OptionScorer(model, tokenizer, (" yes", " no"))
    lead = tokenizer(" yes", add_special_tokens=False)["input_ids"][: len(scorer.lead_ids)]
    assert scorer.lead_ids == lead and scorer.option_ids[0] != scorer.option_ids[1]
    assert scorer.encode_tail("Answer:")[-len(lead) :] == lead if lead else True
    with pytest.raises(ValueError, match="cannot be told apart"):
        OptionScorer(model, tokenizer, (" yes", " yes"))
    with pytest.raises(ValueError, match="batch_size"):
        OptionScorer(model, tokenizer, OPTIONS, batch_size=0)
