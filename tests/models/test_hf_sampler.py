"""The Hugging Face sampler: shapes, seeding, greedy decoding, stop strings and prompt order."""

from __future__ import annotations

from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models.loading import load_policy
from models.sampling import HFSampler, SamplingEngine, cut_at_stop

Policy = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@pytest.fixture(scope="module")
def policy(tiny_dir: Path) -> Policy:
    return load_policy(str(tiny_dir))


def _sample(sampler: HFSampler, prompts: list[str], **overrides) -> list[list[str]]:
    args = dict(n=2, temperature=1.0, top_p=1.0, max_new_tokens=16, stop=["\n"], seed=0, batch_size=8)
    return sampler.sample(prompts, **(args | overrides))


def test_is_a_sampling_engine(policy: Policy) -> None:
    engine: SamplingEngine = HFSampler(*policy)
    assert hasattr(engine, "sample")


def test_n_responses_per_prompt_without_special_tokens(policy: Policy, heldout_prompts: list[str]) -> None:
    calls: list[tuple[int, int]] = []
    out = _sample(
        HFSampler(*policy), heldout_prompts[:5], n=3, batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    assert [len(r) for r in out] == [3] * 5
    assert all(isinstance(text, str) for r in out for text in r)
    assert not any(tok in text for r in out for text in r for tok in ("<eos>", "<pad>", "<bos>", "\n"))
    assert calls == [(4, 15), (8, 15), (12, 15), (15, 15)]


def test_same_seed_same_outputs_and_other_seed_differs(policy: Policy, heldout_prompts: list[str]) -> None:
    sampler = HFSampler(*policy)
    first = _sample(sampler, heldout_prompts, n=4, seed=7)
    assert _sample(sampler, heldout_prompts, n=4, seed=7) == first
    assert _sample(sampler, heldout_prompts, n=4, seed=8) != first


def test_greedy_is_deterministic_and_repeats_copies(policy: Policy, heldout_prompts: list[str]) -> None:
    sampler = HFSampler(*policy)
    out = _sample(sampler, heldout_prompts, n=3, temperature=0.0, seed=1)
    assert all(len(set(r)) == 1 for r in out)
    assert _sample(sampler, heldout_prompts, n=3, temperature=0.0, seed=2) == out
    assert any(r[0] for r in out)  # the warmed-up model answers something


def test_results_come_back_in_prompt_order(policy: Policy, heldout_prompts: list[str]) -> None:
    sampler = HFSampler(*policy)
    # Sorting by length reorders the batch; one prompt per batch involves no sorting and no padding.
    greedy = dict(n=1, temperature=0.0)
    one_by_one = [_sample(sampler, [p], **greedy, batch_size=1)[0] for p in heldout_prompts]
    assert len({len(policy[1](p)["input_ids"]) for p in heldout_prompts}) > 3  # lengths really vary
    assert _sample(sampler, heldout_prompts, **greedy, batch_size=5) == one_by_one
    reversed_out = _sample(sampler, heldout_prompts[::-1], **greedy, batch_size=16)
    assert reversed_out == one_by_one[::-1]


def test_stop_strings_cut_and_end_generation(policy: Policy, heldout_prompts: list[str]) -> None:
    greedy = dict(n=1, temperature=0.0, max_new_tokens=20)
    free_sampler, stop_sampler = HFSampler(*policy), HFSampler(*policy)
    full = _sample(free_sampler, heldout_prompts, **greedy, stop=[])
    assert all("=" in r[0] for r in full), "the warmed-up model should write an equation"
    stopped = _sample(stop_sampler, heldout_prompts, **greedy, stop=["=", "no such stop"])
    assert [r[0] for r in stopped] == [r[0][: r[0].index("=")] for r in full]
    assert 0 < stop_sampler.tokens_generated < free_sampler.tokens_generated


def test_tokens_generated_counts_up_to_eos(policy: Policy, heldout_prompts: list[str]) -> None:
    model, tokenizer = policy
    sampler = HFSampler(model, tokenizer)
    out = _sample(sampler, heldout_prompts[:4], n=1, temperature=0.0, max_new_tokens=30)
    # Greedy text re-encodes to its own tokens (byte-level BPE); +1 per row for the EOS or the "\n".
    expected = sum(len(tokenizer(r[0])["input_ids"]) + 1 for r in out)
    assert sampler.tokens_generated == expected


def test_peft_model_samples_too(tiny_dir: Path, heldout_prompts: list[str]) -> None:
    model, tokenizer = load_policy(str(tiny_dir))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    out = _sample(HFSampler(peft_model.eval(), tokenizer), heldout_prompts[:3], n=2)
    assert [len(r) for r in out] == [2, 2, 2]


def test_cut_at_stop_uses_the_earliest_stop() -> None:
    assert cut_at_stop("a. b\nc", ["\n", "."]) == "a"
    assert cut_at_stop("abc", ["x", ""]) == "abc"
    assert cut_at_stop("abc", []) == "abc"


def test_requires_a_pad_token(policy: Policy) -> None:
    model, tokenizer = policy
    bare = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    bare.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        HFSampler(model, bare)
