"""The Hugging Face sampler: shapes, seeding, greedy decoding, stop strings and prompt order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from configs.loader import load_config
from models.loading import load_policy
from models.sampling import HFSampler, SamplingEngine, cut_at_stop, draw_tokens, sequence_seed, sequence_uniforms
from tasks.prompts import few_shot_prefix

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


def _few_shot_prefix() -> str:
    """The few-shot prefix a campaign samples behind: 3 worked examples (~130 tiny-tokenizer tokens)."""
    return few_shot_prefix(load_config("tiny", ["prompts.few_shot=3"]))


def test_screened_greedy_head_gives_the_same_answers(
    tiny_dir: Path, heldout_prompts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a LoRA adapter, behind a cached few-shot prefix, in padded batches: the same greedy answers.
    monkeypatch.setattr("models.greedy_head.cpu_has_bfloat16", lambda: True)
    model, tokenizer = load_policy(str(tiny_dir))
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    greedy = dict(n=1, temperature=0.0, max_new_tokens=12, batch_size=5, prefix=_few_shot_prefix())
    peft.eval()
    screened, plain = HFSampler(peft, tokenizer), HFSampler(peft, tokenizer, screen_greedy_head=False)
    assert screened._greedy_head() is not None and plain._greedy_head() is None
    assert _sample(screened, heldout_prompts, **greedy) == _sample(plain, heldout_prompts, **greedy)
    assert screened.tokens_generated == plain.tokens_generated > 0


def test_prefix_cache_reuse_gives_the_same_greedy_outputs(policy: Policy, heldout_prompts: list[str]) -> None:
    prefix = _few_shot_prefix()
    assert len(policy[1](prefix)["input_ids"]) > 40
    # Prompts of varied lengths, batches smaller than the sequences, so batches carry padding.
    greedy = dict(n=2, temperature=0.0, max_new_tokens=12, batch_size=5, prefix=prefix)
    reused, plain = HFSampler(*policy), HFSampler(*policy, reuse_prefix_cache=False)
    with_reuse = _sample(reused, heldout_prompts, **greedy)
    assert with_reuse == _sample(plain, heldout_prompts, **greedy)
    assert reused.tokens_generated == plain.tokens_generated > 0
    # The prefix really is used: without it the greedy answers differ.
    assert _sample(plain, heldout_prompts, **(greedy | {"prefix": ""})) != with_reuse


def test_prefix_cache_reuse_matches_logits(policy: Policy, heldout_prompts: list[str]) -> None:
    # The first decoding step's logits of a padded batch agree closely with and without reuse.
    prefix = _few_shot_prefix()
    first_logits = {}
    for reuse in (True, False):
        # The model's own head: a screened greedy head hands the decoding loop hidden states, not logits.
        sampler = HFSampler(*policy, reuse_prefix_cache=reuse, screen_greedy_head=False)
        calls: list = []
        forward = sampler._forward
        sampler._forward = lambda *args, _f=forward, _calls=calls: _calls.append(_f(*args)) or _calls[-1]
        _sample(sampler, heldout_prompts[:6], n=1, temperature=0.0, max_new_tokens=2, batch_size=6, prefix=prefix)
        first_logits[reuse] = calls[1 if reuse else 0][0]  # with reuse, call 0 computes the prefix's cache
    assert first_logits[True].shape == first_logits[False].shape == (6, policy[0].config.vocab_size)
    assert torch.allclose(first_logits[True], first_logits[False], atol=1e-4)


@pytest.mark.parametrize("screen", [True, False])
def test_greedy_matches_transformers_generate(
    policy: Policy, heldout_prompts: list[str], screen: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Screened or not, greedy decoding is generate's argmax; the screen is forced on here even where the CPU
    # would emulate bfloat16 (it would not be used there), so every machine checks it.
    monkeypatch.setattr("models.greedy_head.cpu_has_bfloat16", lambda: True)
    model, tokenizer = policy
    prompts = heldout_prompts[:6]
    sampler = HFSampler(model, tokenizer, screen_greedy_head=screen)
    ours = _sample(sampler, prompts, n=1, temperature=0.0, max_new_tokens=12, stop=[])
    assert (sampler._greedy_head() is not None) == screen
    inputs = tokenizer.pad(
        {"input_ids": [tokenizer(p)["input_ids"] for p in prompts]}, padding_side="left", return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(
            **inputs, do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id, top_k=None, top_p=None
        )
    width = inputs["input_ids"].shape[1]
    assert [r[0] for r in ours] == [tokenizer.decode(row[width:], skip_special_tokens=True) for row in output]


def test_prefix_cache_reuse_sampling_is_seeded(policy: Policy, heldout_prompts: list[str]) -> None:
    prefix = _few_shot_prefix()
    sampler = HFSampler(*policy)
    first = _sample(sampler, heldout_prompts[:8], n=2, seed=11, batch_size=5, prefix=prefix)
    assert _sample(sampler, heldout_prompts[:8], n=2, seed=11, batch_size=5, prefix=prefix) == first
    assert _sample(sampler, heldout_prompts[:8], n=2, seed=12, batch_size=5, prefix=prefix) != first
    plain = HFSampler(*policy, reuse_prefix_cache=False)
    # The same logits and the same RNG draws: sampling agrees with the no-reuse path too.
    assert _sample(plain, heldout_prompts[:8], n=2, seed=11, batch_size=5, prefix=prefix) == first


def test_prefix_cache_reuse_through_peft_and_an_empty_prompt(tiny_dir: Path, heldout_prompts: list[str]) -> None:
    model, tokenizer = load_policy(str(tiny_dir))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.eval()
    prompts = ["", *heldout_prompts[:4]]
    greedy = dict(n=1, temperature=0.0, max_new_tokens=10, batch_size=3, prefix=_few_shot_prefix())
    reused = _sample(HFSampler(peft_model, tokenizer), prompts, **greedy)
    assert reused == _sample(HFSampler(peft_model, tokenizer, reuse_prefix_cache=False), prompts, **greedy)


def test_draw_tokens_follows_temperature_and_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.log(probs).repeat(20_000, 1)

    def frequencies(temperature: float, top_p: float) -> torch.Tensor:
        return torch.bincount(draw_tokens(logits, temperature, top_p), minlength=4) / 20_000

    torch.manual_seed(0)
    assert torch.equal(draw_tokens(logits[:3], 0.0, 0.5), torch.zeros(3, dtype=torch.long))  # greedy
    assert torch.allclose(frequencies(1.0, 1.0), probs, atol=0.015)
    # Temperature 0.5 squares the probabilities before renormalising.
    assert torch.allclose(frequencies(0.5, 1.0), probs**2 / (probs**2).sum(), atol=0.015)
    # top_p=0.75: the smallest set holding 75% of the mass is the first two tokens, renormalised.
    nucleus = frequencies(1.0, 0.75)
    assert nucleus[2:].sum() == 0 and abs(float(nucleus[0]) - 0.5 / 0.8) < 0.015


def test_samples_are_seeded_per_prompt_not_per_batch(policy: Policy, heldout_prompts: list[str]) -> None:
    # Batch sizes 1, 3 and 8 put different prompts (and padding) together; a prompt's k samples must not change.
    sampler = HFSampler(*policy)
    prompts = heldout_prompts[:5]
    ids = [f"p{i}" for i in range(len(prompts))]
    args = dict(n=2, seed=4, max_new_tokens=8)
    by_batch = {b: _sample(sampler, prompts, **args, batch_size=b, prompt_ids=ids) for b in (1, 3, 8)}
    assert by_batch[1] == by_batch[3] == by_batch[8]
    assert any(len(set(row)) > 1 for row in by_batch[8])  # really sampled, not greedy
    # A shard of the prompts (other neighbours, other positions) gives the same rows for the same ids.
    assert _sample(sampler, prompts[4:1:-1], **args, batch_size=4, prompt_ids=ids[4:1:-1]) == by_batch[8][4:1:-1]
    # The id is the key: the same prompt under another id, or another seed, samples differently.
    assert _sample(sampler, prompts, **args, batch_size=8, prompt_ids=[i + "x" for i in ids]) != by_batch[8]
    assert _sample(sampler, prompts, **(args | {"seed": 5}), batch_size=8, prompt_ids=ids) != by_batch[8]
    with pytest.raises(ValueError, match="prompt_ids: 2 ids for 5 prompts"):
        _sample(sampler, prompts, prompt_ids=ids[:2])


def test_sequence_seed_and_uniforms_are_fixed_functions() -> None:
    # Hand-checked: the first 8 bytes of sha256("3\x1fq\x1f1"), shifted right by one bit.
    digest = hashlib.sha256(b"3\x1fq\x1f1").digest()
    assert sequence_seed(3, "q", 1) == int.from_bytes(digest[:8], "big") >> 1 < 2**63
    assert len({sequence_seed(3, "q", j) for j in range(4)} | {sequence_seed(4, "q", 0)}) == 5
    rows = sequence_uniforms([7, 9, 7], 5)
    assert torch.equal(rows[0], torch.rand(5, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(rows[0], rows[2]) and not torch.equal(rows[0], rows[1])
    # Given uniforms decide the draw: u just below the first token's mass (0.5) picks it, just above the next.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    assert draw_tokens(logits, 1.0, 1.0, torch.tensor([0.49, 0.51])).tolist() == [0, 1]
