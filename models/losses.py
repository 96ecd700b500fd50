"""The training losses selftrain's trainers use, each following the paper or upstream code it names.

- `completion_loss`: supervised fine-tuning on completion tokens only (TRL 1.16's SFT loss), with the LM head
  applied only where a loss is taken, and the logged entropy read off the loss's own softmax
  (`CrossEntropyWithEntropy`); with a frozen head (a LoRA policy's), the head, the loss and its gradient in one
  pass over vocabulary chunks (`ChunkedHeadCrossEntropy`).
- `kl_sft_loss`: SuperHF's KL-regularised SFT loss (Mukobi et al. 2023, "SuperHF: Supervised Iterative Learning
  from Human Feedback"); `scored_kl_sft_loss` the same on `completion_logits`' rows (the head applied only there).
- `completion_logps`: the summed log-probability of a completion after its prompt, the quantity DPO's implicit
  reward compares (Rafailov et al. 2023, "Direct Preference Optimization").

Labels follow the Hugging Face convention: position t of the logits predicts token t+1, and `IGNORE` (-100) marks
tokens that carry no loss (prompt, padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch.utils.weak import WeakTensorKeyDictionary
from transformers import PreTrainedModel, PreTrainedTokenizerBase

IGNORE = -100


class CrossEntropyWithEntropy(torch.autograd.Function):
    """Summed cross-entropy of `(tokens, vocab)` logits against labels, and each row's entropy, from one softmax.

    The same loss and gradient as `F.cross_entropy(logits, labels, reduction="sum")`, whose log-softmax
    autograd keeps one `(tokens, vocab)` tensor for the backward pass; this keeps the probabilities instead
    (the same size) and reads the entropy off them, where logging it beside the loss took a second
    log-softmax, an exp and a product over the whole vocabulary (Gemma's 262k tokens:
    benchmarks/head_loss.py). The entropy is detached: no gradient flows through it.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed negative log-likelihood, per-row entropy), both float32."""
        logits = logits.float()
        log_probs = torch.log_softmax(logits, -1)
        log_normaliser = logits[:, 0] - log_probs[:, 0]  # logsumexp, without another pass over the vocabulary
        nll = -log_probs.gather(1, labels[:, None]).sum()
        probs = log_probs.exp_()  # in place: the log-probabilities are not needed again
        entropy = log_normaliser - torch.linalg.vecdot(probs, logits)
        ctx.save_for_backward(probs, labels)
        ctx.mark_non_differentiable(entropy)
        return nll, entropy

    @staticmethod
    def backward(ctx: Any, grad_nll: torch.Tensor, _grad_entropy: torch.Tensor) -> tuple[torch.Tensor, None]:
        """d nll / d logits = probabilities - one-hot(label), times the incoming gradient."""
        probs, labels = ctx.saved_tensors
        grad = probs.mul_(grad_nll)  # the saved probabilities are not needed again either
        grad[torch.arange(len(labels)), labels] -= grad_nll
        return grad, None


HEAD_CHUNK = 4096
"""Vocabulary rows per pass of `ChunkedHeadCrossEntropy`: the fastest of 4,096-32,768 at Gemma's shapes here
(benchmarks/head_loss.py on 2026-12-05, CPU time against the whole logits' `CrossEntropyWithEntropy`: 0.83-0.89x
at 4,096, 0.86-0.91x at 8,192, 0.85-0.93x at 16,384, 1.07x at 32,768)."""


class ChunkedHeadCrossEntropy(torch.autograd.Function):
    """`CrossEntropyWithEntropy` of `hidden @ weight.T`, the LM head applied one vocabulary chunk at a time, with
    the gradient with respect to `hidden` computed in the same pass.

    The `(tokens, vocab)` logits never exist whole, where the head's product alone wrote 280 MB for a batch of
    Gemma's (267 completion tokens x 262,144). Each chunk's logits update a running maximum, the softmax's
    normaliser, the sum of probability times logit (for the entropy) and the sum of probability times the
    chunk's head rows (for the gradient), each rescaled when the maximum rises: the online softmax of flash
    attention, as Liger Kernel's and Cut Cross-Entropy's fused linear cross-entropy do on GPUs. The gradient of
    the summed loss with respect to `hidden` is `softmax(logits) @ weight - weight[labels]`, known when the
    pass ends, so backward only scales it. The head's weight gets no gradient: `completion_loss` uses this only
    for a frozen head (a LoRA policy's tied embedding).

    With bfloat16 `hidden` and `weight` (`train.base_dtype: bfloat16`) each chunk's products run in bfloat16 and
    everything else in float32; the gradient returns in bfloat16.
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed negative log-likelihood, per-row entropy, per-row top token)."""
        rows, exact = hidden.shape[0], weight.dtype == torch.float32
        hidden32 = hidden.float()  # hidden itself when float32
        top_logit = hidden32.new_full((rows,), float("-inf"))
        top = torch.zeros(rows, dtype=torch.long, device=hidden.device)
        normaliser = hidden32.new_zeros(rows)  # sum of exp(logit - top_logit)
        mass_logit = hidden32.new_zeros(rows)  # sum of exp(logit - top_logit) * logit
        mass_rows = torch.zeros_like(hidden32)  # sum of exp(logit - top_logit) * the logit's head row
        label_logit = hidden32.new_zeros(rows)  # each row's label's logit, from the chunk that holds it
        for start in range(0, weight.shape[0], chunk):
            head_rows = weight[start : start + chunk]
            logits = (hidden @ head_rows.T).float()  # bfloat16: the product in bfloat16, the rest in float32
            chunk_top, chunk_arg = logits.max(dim=1)
            top = torch.where(chunk_top > top_logit, chunk_arg + start, top)  # the first maximum, as argmax
            new_top = torch.maximum(top_logit, chunk_top)
            rescale = torch.exp(top_logit - new_top)
            probs = torch.exp(logits - new_top[:, None])
            normaliser.mul_(rescale).add_(probs.sum(dim=1))
            mass_logit.mul_(rescale).add_(torch.linalg.vecdot(probs, logits))
            if exact:
                mass_rows.mul_(rescale[:, None]).addmm_(probs, head_rows)
            else:
                mass_rows.mul_(rescale[:, None]).add_(probs.to(weight.dtype) @ head_rows)
            top_logit = new_top
            held = (labels >= start) & (labels < start + logits.shape[1])
            label_logit[held] = logits[held, labels[held] - start]
        log_normaliser = top_logit + normaliser.log()
        label_rows = weight[labels].float()
        nll = (log_normaliser - label_logit).sum()  # the label's logit as rounded in the softmax: never below 0
        entropy = log_normaliser - mass_logit / normaliser
        grad = mass_rows.div_(normaliser[:, None]).sub_(label_rows).to(hidden.dtype)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(entropy, top)
        return nll, entropy, top

    @staticmethod
    def backward(
        ctx: Any, grad_nll: torch.Tensor, _grad_entropy: torch.Tensor, _grad_top: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        """The pass's gradient, times the incoming one."""
        (grad,) = ctx.saved_tensors
        return grad * grad_nll, None, None, None


def completion_hidden(
    model: PreTrainedModel | PeftModel, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module, float | None]:
    """The body's hidden states at the positions whose next token has a label (a completion token), those
    labels, the LM head, and the model's logit cap (None for most).

    Runs the transformer body (LoRA layers included: PEFT injects them into the modules, and a `PeftModel`'s
    `disable_adapter()` holds here too) for every position and keeps the rows a loss is taken on: with Gemma's
    262k-token vocabulary the head over every position is most of a step.

    Args:
        model: A causal LM or a `PeftModel` around one.
        inputs: A collated batch: `input_ids`, `attention_mask`, `labels` (-100 where no loss is taken),
            optionally `position_ids`.

    Returns:
        `(hidden, labels, head, cap)`: `(tokens, dim)` and `(tokens,)`, one row per labelled next token, in batch
        order.
    """
    causal_lm = cast(PreTrainedModel, model.get_base_model() if isinstance(model, PeftModel) else model)
    body = causal_lm.base_model
    head = cast(torch.nn.Module, causal_lm.get_output_embeddings())  # transformers leaves its return untyped
    body_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    hidden = body(**body_inputs, use_cache=False).last_hidden_state
    targets = inputs["labels"][:, 1:]
    scored = targets != IGNORE
    # Models that cap their logits (Gemma 2, say) do it in forward after the head.
    cap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    return hidden[:, :-1][scored], targets[scored], head, cap or None


def completion_logits(
    model: PreTrainedModel | PeftModel, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at the positions whose next token has a label (a completion token), and those labels: the LM
    head (and the model's logit cap) on `completion_hidden`'s rows.

    Returns:
        `(logits, labels)`: `(tokens, vocab)` and `(tokens,)`, one row per labelled next token, in batch order.
    """
    hidden, labels, head, cap = completion_hidden(model, inputs)
    return _head_logits(head, hidden, cap), labels


def _head_logits(head: torch.nn.Module, hidden: torch.Tensor, cap: float | None) -> torch.Tensor:
    """The head on `hidden`'s rows, capped as the model's forward caps them (`final_logit_softcapping`)."""
    logits = head(hidden)
    return torch.tanh(logits / cap) * cap if cap else logits


def _frozen_linear_head(head: torch.nn.Module, hidden: torch.Tensor, cap: float | None) -> bool:
    """Whether `ChunkedHeadCrossEntropy` computes what the head and `CrossEntropyWithEntropy` would: a bias-free
    linear head whose weight takes no gradient, no logit cap, head and hidden states both float32 (exactly) or
    both bfloat16 (`train.base_dtype`: the products in bfloat16, the softmax and its sums in float32)."""
    return (
        isinstance(head, torch.nn.Linear)
        and head.bias is None
        and not head.weight.requires_grad
        and cap is None
        and head.weight.dtype == hidden.dtype
        and hidden.dtype in (torch.float32, torch.bfloat16)
    )


_BFLOAT16_COPIES = WeakTensorKeyDictionary()  # weight -> (its version, its bfloat16 copy)


def bfloat16_copy(weight: torch.Tensor) -> torch.Tensor:
    """A bfloat16 copy of a frozen `weight`, made once while the weight lives and is unchanged (its version
    counter): copying Gemma's head (262,144 x 640) took about a tenth of a second, 5% of a step."""
    held = _BFLOAT16_COPIES.get(weight)
    if held is None or held[0] != weight._version:
        held = (weight._version, weight.detach().to(torch.bfloat16))
        _BFLOAT16_COPIES[weight] = held
    return held[1]


def completion_loss(
    model: PreTrainedModel | PeftModel,
    inputs: dict[str, torch.Tensor],
    num_items_in_batch: torch.Tensor | int | None = None,
    *,
    head_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy over completion tokens, with logits computed only where they are needed
    (`completion_hidden`): through `ChunkedHeadCrossEntropy` when the head is frozen (a LoRA policy), else the
    head's logits and `CrossEntropyWithEntropy`.

    The loss is TRL 1.16's SFT loss (`SFTTrainer.compute_loss`, fused-LM-head
    branch): the summed negative log-likelihood divided by `num_items_in_batch` when the Trainer passes
    it (the count of labelled next tokens over the gradient-accumulation window), else by the batch's
    own count (at least 1). TRL's fused head on a CPU scores every position (it compacts to the
    labelled ones only on Triton devices: `trl/trainer/utils.py`, `add_fused_lm_head`).

    Args:
        model: A causal LM or a `PeftModel` around one.
        inputs: A collated batch: `input_ids`, `attention_mask`, `labels` (-100 where no loss is taken),
            optionally `position_ids`.
        num_items_in_batch: The Trainer's token count to normalise by, or None.
        head_dtype: bfloat16 runs a frozen float32 head's products in bfloat16 (`train.head_dtype`): the
            hidden states and a bfloat16 copy of the head's weight (`bfloat16_copy`) go into
            `ChunkedHeadCrossEntropy`, whose softmax and sums stay float32; the body stays as loaded.

    Returns:
        The loss, and detached statistics over the scored tokens: `tokens`, `entropy` (mean entropy of
        the next-token distribution) and `accuracy` (share where the label is the top token).
    """
    hidden, labels, head, cap = completion_hidden(model, inputs)
    if _frozen_linear_head(head, hidden, cap):
        weight = cast(torch.Tensor, head.weight)  # a Linear's, checked just above
        if head_dtype == torch.bfloat16 and weight.dtype == torch.float32:
            hidden, weight = hidden.to(torch.bfloat16), bfloat16_copy(weight)
        nll, entropy, top = ChunkedHeadCrossEntropy.apply(hidden, weight, labels, HEAD_CHUNK)
    else:
        logits = _head_logits(head, hidden, cap)
        nll, entropy = CrossEntropyWithEntropy.apply(logits, labels)
        top = logits.detach().argmax(-1)
    count = labels.numel()
    loss = nll / (max(count, 1) if num_items_in_batch is None else num_items_in_batch)
    with torch.no_grad():
        correct = top == labels
        n = max(count, 1)
        stats = {"tokens": float(count), "entropy": float(entropy.sum()) / n, "accuracy": float(correct.sum()) / n}
    return loss, stats


def kl_sft_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SuperHF's loss on one batch: token-mean cross-entropy plus `kl_weight` x token-mean KL(policy || reference).

    SuperHF (Mukobi et al. 2023) replaces RL's policy gradient with supervised learning on best-of-k samples
    and keeps RLHF's KL prior toward the starting policy. The KL here is exact, over the whole next-token
    distribution at each completion position, so it is zero when the two models agree.

    Args:
        logits: Policy logits, `(batch, seq, vocab)`; position t predicts token t+1.
        ref_logits: Reference logits of the same shape (no gradient needed).
        labels: `(batch, seq)` token ids, `-100` where no loss is taken (prompt, padding).
        kl_weight: Weight of the KL term.

    Returns:
        `(loss, cross_entropy, kl)`, each a scalar tensor; a batch without completion tokens gives zeros.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return scored_kl_sft_loss(logits[:, :-1][mask], ref_logits[:, :-1][mask], targets[mask], kl_weight)


def scored_kl_sft_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`kl_sft_loss` on the scored positions only, as `completion_logits` gives them (the trainer's form).

    Args:
        logits: Policy logits, `(tokens, vocab)`, one row per labelled next token.
        ref_logits: Reference logits at the same positions (no gradient needed).
        labels: `(tokens,)`, the next token of each row.
        kl_weight: Weight of the KL term.

    Returns:
        `(loss, cross_entropy, kl)`, each a scalar tensor; no rows give zeros.
    """
    if not labels.numel():
        zero = logits.sum() * 0.0
        return zero, zero, zero
    logp = F.log_softmax(logits.float(), dim=-1)
    cross_entropy = -logp.gather(-1, labels[:, None]).mean()
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    kl = (logp.exp() * (logp - ref_logp)).sum(-1).mean()
    return cross_entropy + kl_weight * kl, cross_entropy, kl


@torch.no_grad()
def completion_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
) -> torch.Tensor:
    """Summed log-probability of each completion (plus EOS, as DPO trains it) after its prompt.

    DPO's implicit reward of a completion is beta x (this under the policy - this under the reference)
    (Rafailov et al. 2023, eq. 5); TRL's `DPOTrainer` tokenises prompt and completion the same way and
    appends EOS. One unpadded forward per example: meant for tests and diagnostics on a few pairs, not
    for speed.

    Returns:
        A float tensor of shape `(len(prompts),)`.
    """
    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(prompt + completion)["input_ids"][len(prompt_ids) :] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + completion_ids])
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        token_logps = logps.gather(-1, targets[:, None])[:, 0]
        out.append(token_logps[len(prompt_ids) - 1 :].sum())
    return torch.stack(out)
