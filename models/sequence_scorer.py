"""Per-token log-probabilities of responses after their prompts, batched, and a brief LoRA tuning on a target set.

The data filters of `tasks/filters.py` need a response's log-likelihood under a fixed model (perplexity, POINTS),
under the policy (confidence, CLEAR) and under a model before and after a short tuning on a target set
(CoLoR-Filter). Rows are padded on the right and only the hidden states that predict a response token go through
the LM head, as `models.losses.completion_loss` does: with Gemma's 262k-token vocabulary the head is most of a
forward pass, and the prompt is most of each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str], *, eos: bool = False
) -> list[tuple[list[int], int]]:
    """Token ids of `prompt + response` (special tokens included) and where the response starts, per pair.

    The response's tokens are those of the whole text after the prompt's own tokens (as
    `models.losses.completion_logps` and TRL's prompt-completion tokenisation split them); with `eos` the EOS
    that SFT appends follows.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = []
    for prompt, response in zip(prompts, responses, strict=True):
        start = len(tokenizer(prompt)["input_ids"])
        ids = list(tokenizer(prompt + response)["input_ids"])
        if eos and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        out.append((ids, start))
    return out


def _batch_logprobs(model: PreTrainedModel | PeftModel, batch: Sequence[tuple[list[int], int]]) -> list[torch.Tensor]:
    """Log-probabilities of each row's response tokens (a 1-D tensor per row, maybe empty), with gradients if on."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, _) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    scored = torch.zeros((len(batch), width - 1), dtype=torch.bool)  # position t predicts token t+1
    for i, (ids, start) in enumerate(batch):
        scored[i, max(start - 1, 0) : len(ids) - 1] = True
    causal_lm = cast(PreTrainedModel, model.get_base_model() if isinstance(model, PeftModel) else model)
    hidden = causal_lm.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    head = cast(torch.nn.Module, causal_lm.get_output_embeddings())
    logits = head(hidden[:, :-1][scored]).float()
    cap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    token_logps = F.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:][scored][:, None])[:, 0]
    counts = scored.sum(dim=1).tolist()
    return list(torch.split(token_logps, counts))


@torch.no_grad()
def response_logprobs(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    batch_size: int = 16,
) -> list[list[float]]:
    """The log-probability of every response token after its prompt (no EOS), per pair, in input order.

    Args:
        model: A causal LM (or a `PeftModel` around one: its active adapter counts) in eval mode.
        tokenizer: Its tokenizer.
        prompts: The rendered prompts.
        responses: The responses, one per prompt.
        batch_size: Rows per forward pass (rows are sorted by length first, less padding).

    Returns:
        One list of floats per pair; empty for a response with no tokens.
    """
    encoded = encode_pairs(tokenizer, prompts, responses)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out: list[list[float]] = [[] for _ in encoded]
    for begin in range(0, len(order), batch_size):
        chunk = order[begin : begin + batch_size]
        for index, logps in zip(chunk, _batch_logprobs(model, [encoded[i] for i in chunk]), strict=True):
            out[index] = logps.tolist()
    return out


def tune_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    steps: int,
    learning_rate: float,
    r: int,
    seed: int,
    batch_size: int = 8,
) -> PeftModel:
    """Wrap `model` in a fresh LoRA (all linear layers, alpha = 2r) and train it briefly on prompt/completion pairs.

    Plain AdamW on the mean negative log-likelihood of completion tokens plus EOS (the SFT loss), `steps` steps
    over the pairs in order, cycling, `batch_size` pairs a step: CoLoR-Filter's "prior tuned on the target
    data" (Brandfonbrener et al. 2024), made cheap. Seeded, so the same inputs give the same adapter.

    Returns:
        The `PeftModel` (in eval mode); `with model.disable_adapter():` gives the untouched prior back.
    """
    if not prompts:
        raise ValueError("tune_lora needs at least one target pair")
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    tuned = cast(PeftModel, get_peft_model(model, config))
    encoded = encode_pairs(tokenizer, prompts, completions, eos=True)
    optimiser = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=learning_rate)
    tuned.train()
    for step in range(steps):
        batch = [encoded[(step * batch_size + i) % len(encoded)] for i in range(min(batch_size, len(encoded)))]
        logps = torch.cat(_batch_logprobs(tuned, batch))
        loss = -logps.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    tuned.eval()
    return tuned
