"""The training losses on tiny tensors and tiny models, against values worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import models.losses
from configs.schema import TrainConfig
from models.losses import (
    IGNORE,
    ChunkedHeadCrossEntropy,
    CrossEntropyWithEntropy,
    bfloat16_copy,
    completion_logits,
    completion_logps,
    completion_loss,
    kl_sft_loss,
    scored_kl_sft_loss,
)
from models.training import lora_config

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def tiny_llama(vocab: int, *, zero_head: bool) -> LlamaForCausalLM:
    """A one-layer Llama; with a zero LM head every logit is 0, so every next token has probability 1/vocab."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    if zero_head:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    return model


# kl_sft_loss (SuperHF, Mukobi et al. 2023)


def test_kl_sft_loss_by_hand_on_a_two_token_vocabulary() -> None:
    # Policy uniform (p = 1/2, 1/2) at every position; reference logits (ln 3, 0), i.e. q = (3/4, 1/4).
    # Scored positions 0 and 2 (labels at 1 and 3): CE = ln 2 each; KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3).
    # Position 1 predicts a masked label: its (very different) logits must not count.
    logits = torch.zeros(1, 4, 2)
    logits[0, 1] = torch.tensor([50.0, -50.0])
    ref = torch.tensor([LN3, 0.0]).expand(1, 4, 2).clone()
    labels = torch.tensor([[IGNORE, 0, IGNORE, 1]])
    loss, ce, kl = kl_sft_loss(logits, ref, labels, kl_weight=2.0)
    assert ce.item() == pytest.approx(LN2, rel=1e-6)
    assert kl.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
    assert loss.item() == pytest.approx(LN2 + math.log(4 / 3), rel=1e-6)  # = ln(8/3)


def test_kl_sft_loss_cross_entropy_is_the_token_mean() -> None:
    # Policy logits (ln 3, 0): -log p(0) = ln(4/3), -log p(1) = ln 4; the mean over the two scored tokens.
    logits = torch.tensor([LN3, 0.0]).expand(1, 3, 2).clone()
    loss, ce, kl = kl_sft_loss(logits, logits.clone(), torch.tensor([[IGNORE, 0, 1]]), kl_weight=5.0)
    assert ce.item() == pytest.approx((math.log(4 / 3) + LN4) / 2, rel=1e-6)
    assert kl.item() == pytest.approx(0.0, abs=1e-7) and loss.item() == pytest.approx(ce.item(), rel=1e-6)


def test_kl_term_vanishes_when_policy_and_reference_agree() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    loss, ce, kl = kl_sft_loss(logits, logits.clone(), labels, kl_weight=0.7)
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6) and ce.item() == pytest.approx(plain.item(), rel=1e-6)


def test_kl_term_is_positive_and_weighted_when_they_differ() -> None:
    torch.manual_seed(1)
    logits, ref = torch.randn(1, 4, 7), torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, 2, 3, 4]])
    loss, ce, kl = kl_sft_loss(logits, ref, labels, kl_weight=0.5)
    assert kl.item() > 0 and loss.item() == pytest.approx(ce.item() + 0.5 * kl.item(), rel=1e-6)
    zero, _, _ = kl_sft_loss(logits, ref, torch.full((1, 4), -100), kl_weight=0.5)
    assert zero.item() == 0.0


# completion_loss (TRL 1.16's completion-only SFT loss, logits only where labelled)


def batch(labels: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[(3 * i + j) % 8 for j in range(len(row))] for i, row in enumerate(labels)])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(labels)}


def test_completion_loss_by_hand_with_uniform_logits() -> None:
    # A zero head gives every token probability 1/8: each scored token costs ln 8, the entropy is ln 8, and
    # argmax picks token 0, so the accuracy is the share of labels equal to 0 (2 of the 5 scored: 0, 0).
    model = tiny_llama(8, zero_head=True)
    inputs = batch([[IGNORE, IGNORE, 0, 5, 0], [IGNORE, 2, 7, IGNORE, IGNORE]])
    loss, stats = completion_loss(model, inputs)
    assert loss.item() == pytest.approx(math.log(8), rel=1e-6)
    assert stats == pytest.approx({"tokens": 5.0, "entropy": math.log(8), "accuracy": 2 / 5}, rel=1e-6)
    # The Trainer's count over a gradient-accumulation window replaces the batch's own count.
    halved, _ = completion_loss(model, inputs, num_items_in_batch=10)
    assert halved.item() == pytest.approx(5 * math.log(8) / 10, rel=1e-6)


def test_completion_loss_without_labelled_tokens_is_zero() -> None:
    loss, stats = completion_loss(tiny_llama(8, zero_head=True), batch([[IGNORE] * 4]))
    assert loss.item() == 0.0 and stats["tokens"] == 0.0


def test_completion_loss_equals_cross_entropy_over_all_logits() -> None:
    model = tiny_llama(8, zero_head=False)
    inputs = batch([[IGNORE, 1, 2, 3, IGNORE], [IGNORE, IGNORE, IGNORE, 6, 4]])
    full = model(input_ids=inputs["input_ids"]).logits
    expected = F.cross_entropy(full[:, :-1].reshape(-1, 8), inputs["labels"][:, 1:].reshape(-1), ignore_index=IGNORE)
    loss, _ = completion_loss(model, inputs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Through a fresh LoRA (B = 0) the loss is the base model's, reached via the adapter's wrapped modules.
    peft_model = get_peft_model(model, lora_config(TrainConfig(target_modules=["q_proj", "v_proj"])))
    wrapped, _ = completion_loss(peft_model, inputs)
    assert wrapped.item() == pytest.approx(expected.item(), rel=1e-5)


def test_superhf_on_completion_logits_equals_its_loss_over_all_logits() -> None:
    # The trainer's form (the head only at labelled positions, for the policy and its reference) gives the same
    # loss, cross-entropy, KL and gradient as the loss over every position's logits.
    policy, reference = tiny_llama(8, zero_head=False), tiny_llama(8, zero_head=False)
    with torch.no_grad():
        for weight in reference.parameters():
            weight.add_(0.2 * torch.randn_like(weight))
    inputs = batch([[IGNORE, 1, 2, 3, IGNORE], [IGNORE, IGNORE, IGNORE, 6, 4]])
    full = kl_sft_loss(policy(input_ids=inputs["input_ids"]).logits, reference(**inputs).logits, inputs["labels"], 0.3)
    full[0].backward()
    expected = [weight.grad.clone() for weight in policy.parameters()]
    policy.zero_grad()
    logits, labels = completion_logits(policy, inputs)
    with torch.no_grad():
        ref_logits, _ = completion_logits(reference, inputs)
    scored = scored_kl_sft_loss(logits, ref_logits, labels, 0.3)
    scored[0].backward()
    assert labels.tolist() == [1, 2, 3, 6, 4] and scored[2].item() > 0
    assert [t.item() for t in scored] == pytest.approx([t.item() for t in full], rel=1e-5)
    for weight, grad in zip(policy.parameters(), expected, strict=True):
        torch.testing.assert_close(weight.grad, grad, rtol=1e-4, atol=1e-6)
    zero = scored_kl_sft_loss(logits[:0], ref_logits[:0], labels[:0], 0.3)
    assert [t.item() for t in zero] == [0.0, 0.0, 0.0]


def test_fused_cross_entropy_matches_torch_in_value_gradient_and_entropy() -> None:
    torch.manual_seed(2)
    logits = (3 * torch.randn(6, 50)).requires_grad_()
    labels = torch.tensor([0, 7, 49, 3, 3, 20])
    nll, entropy = CrossEntropyWithEntropy.apply(logits, labels)
    (2.5 * nll).backward()
    reference = logits.detach().clone().requires_grad_()
    (2.5 * F.cross_entropy(reference, labels, reduction="sum")).backward()
    assert nll.item() == pytest.approx(F.cross_entropy(reference, labels, reduction="sum").item(), rel=1e-6)
    assert torch.allclose(logits.grad, reference.grad, atol=1e-6)
    log_probs = reference.detach().log_softmax(-1)
    assert torch.allclose(entropy, -(log_probs.exp() * log_probs).sum(-1), atol=1e-5)
    assert not entropy.requires_grad
    empty_nll, empty_entropy = CrossEntropyWithEntropy.apply(torch.zeros(0, 50), torch.zeros(0, dtype=torch.long))
    assert empty_nll.item() == 0.0 and empty_entropy.shape == (0,)


def test_chunked_head_matches_the_whole_logits_in_value_gradient_entropy_and_top_token() -> None:
    # A vocabulary of 50 in chunks of 8, the last one short; label 49 sits in it.
    torch.manual_seed(3)
    weight = 2 * torch.randn(50, 16)
    hidden = torch.randn(6, 16, requires_grad=True)
    labels = torch.tensor([0, 7, 49, 3, 3, 20])
    nll, entropy, top = ChunkedHeadCrossEntropy.apply(hidden, weight, labels, 8)
    (2.5 * nll).backward()
    reference = hidden.detach().clone().requires_grad_()
    logits = reference @ weight.T
    whole_nll, whole_entropy = CrossEntropyWithEntropy.apply(logits, labels)
    (2.5 * whole_nll).backward()
    assert nll.item() == pytest.approx(whole_nll.item(), rel=1e-5)
    torch.testing.assert_close(hidden.grad, reference.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(entropy, whole_entropy, rtol=1e-4, atol=1e-5)
    assert top.tolist() == logits.argmax(-1).tolist() and not entropy.requires_grad
    empty = ChunkedHeadCrossEntropy.apply(torch.zeros(0, 16), weight, torch.zeros(0, dtype=torch.long), 8)
    assert empty[0].item() == 0.0 and empty[1].shape == empty[2].shape == (0,)


def test_chunked_head_in_bfloat16_is_the_float32_loss_to_bfloat16_precision() -> None:
    # train.base_dtype: bfloat16 gives a bfloat16 head and hidden states: the products round to bfloat16's 8 bits,
    # the softmax and its sums stay float32, and the gradient comes back in bfloat16.
    torch.manual_seed(4)
    weight, hidden = 2 * torch.randn(50, 16), torch.randn(6, 16)
    labels = torch.tensor([0, 7, 49, 3, 3, 20])
    low = hidden.bfloat16().requires_grad_()
    nll, entropy, top = ChunkedHeadCrossEntropy.apply(low, weight.bfloat16(), labels, 8)
    nll.backward()
    exact = hidden.bfloat16().float().requires_grad_()  # the same inputs, rounded, through float32
    whole_nll, whole_entropy = CrossEntropyWithEntropy.apply(exact @ weight.bfloat16().float().T, labels)
    whole_nll.backward()
    assert nll.dtype == entropy.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    # Each token's loss uses its label's logit as rounded in the softmax, so none falls below zero even where
    # the label is the top token by far (a trained policy's case).
    sure = ChunkedHeadCrossEntropy.apply(10 * weight[labels].bfloat16(), weight.bfloat16(), labels, 8)[0]
    assert sure.item() > -1e-6
    assert nll.item() == pytest.approx(whole_nll.item(), rel=2e-2)
    torch.testing.assert_close(entropy, whole_entropy, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(low.grad.float(), exact.grad, rtol=5e-2, atol=5e-2)
    assert top.shape == (6,)


def test_completion_loss_through_a_frozen_head_in_chunks_is_the_loss_through_whole_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A LoRA policy's head is frozen, so completion_loss takes the chunked pass (3 of the 8 tokens at a time
    # here); forced onto the whole logits it gives the same loss, statistics and LoRA gradients.
    model = get_peft_model(tiny_llama(8, zero_head=False), lora_config(TrainConfig(target_modules=["q_proj"])))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_()  # a trained adapter, so its gradients are not zero
    inputs = batch([[IGNORE, 1, 2, 3, IGNORE], [IGNORE, IGNORE, IGNORE, 6, 4]])
    lora = [weight for weight in model.parameters() if weight.requires_grad]
    monkeypatch.setattr(models.losses, "HEAD_CHUNK", 3)
    chunked, chunked_stats = completion_loss(model, inputs)
    chunked.backward()
    chunked_grads = [weight.grad.clone() for weight in lora]
    model.zero_grad()
    monkeypatch.setattr(models.losses, "_frozen_linear_head", lambda *_: False)
    whole, whole_stats = completion_loss(model, inputs)
    whole.backward()
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-5)
    assert chunked_stats == pytest.approx(whole_stats, rel=1e-5)
    for got, expected in zip(chunked_grads, (weight.grad for weight in lora), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_a_bfloat16_head_gives_the_float32_loss_and_gradients_to_bfloat16_precision() -> None:
    # train.head_dtype: bfloat16 rounds only the head's products; the body and its LoRA gradients stay float32.
    model = get_peft_model(tiny_llama(64, zero_head=False), lora_config(TrainConfig(target_modules=["q_proj"])))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_()
    inputs = batch([[IGNORE, 1, 2, 30, IGNORE], [IGNORE, IGNORE, IGNORE, 60, 4]])
    lora = [weight for weight in model.parameters() if weight.requires_grad]
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad()
        loss, stats = completion_loss(model, inputs, head_dtype=dtype)
        loss.backward()
        results[dtype] = loss, [weight.grad.clone() for weight in lora]
    (exact, exact_grads), (low, low_grads) = results[torch.float32], results[torch.bfloat16]
    assert low.dtype == torch.float32 and low.item() != exact.item()  # rounded, so not identical
    assert low.item() == pytest.approx(exact.item(), rel=2e-2)
    assert all(grad.dtype == torch.float32 for grad in low_grads)
    for got, expected in zip(low_grads, exact_grads, strict=True):
        assert (got - expected).norm() <= 5e-2 * expected.norm()


# completion_logps (DPO's log-probabilities, Rafailov et al. 2023)


def test_completion_logps_by_hand_with_uniform_logits(tiny_dir: Path) -> None:
    # Every token costs -ln V, so a completion scores -(its tokens + EOS) ln V; the prompt is not counted.
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    vocab = len(tokenizer)
    model = tiny_llama(vocab, zero_head=True)
    prompts, completions = ["Question: 2 + 3\nAnswer:", "Q: 1"], [" The answer is 5.", " 1"]
    got = completion_logps(model, tokenizer, prompts, completions)
    counts = [
        len(tokenizer(p + c)["input_ids"]) - len(tokenizer(p)["input_ids"]) + 1
        for p, c in zip(prompts, completions, strict=True)
    ]
    assert counts[0] > counts[1] >= 2
    assert got.tolist() == pytest.approx([-n * math.log(vocab) for n in counts], rel=1e-5)


def test_the_bfloat16_head_copy_is_made_once_and_renewed_when_the_weight_changes() -> None:
    weight = torch.randn(8, 4)
    first = bfloat16_copy(weight)
    assert first.dtype == torch.bfloat16 and torch.equal(first, weight.bfloat16())
    assert bfloat16_copy(weight) is first
    weight.mul_(2)  # an in-place change bumps the version counter
    assert torch.equal(bfloat16_copy(weight), weight.bfloat16())
