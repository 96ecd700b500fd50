"""Load a sequence-classification reward model and score (prompt, response) texts with it in [0, 1].

Any Hugging Face `AutoModelForSequenceClassification` checkpoint with one output (`num_labels=1`) works: a
reward model trained by `tasks.train_reward.train_reward_model`, or one from the hub. A causal-LM
checkpoint loads too, with a freshly initialised score head (transformers warns; the scores are then
noise until the head is trained). The text scored is `prompt + response + EOS`, exactly what TRL's
`RewardTrainer` trains on, and the score is the sigmoid of the logit at the last non-pad token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.loading import ensure_pad_token


def load_reward_model(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a one-output sequence-classification model and its tokenizer, in float32 and eval mode.

    Args:
        path: A local directory or a hub id (with `HF_HUB_OFFLINE=1`, resolved from the local cache only).

    Returns:
        The model and a tokenizer whose pad token is distinct from EOS where the vocabulary allows, and
        whose id is the model's `pad_token_id` (the model reads the logit at the last non-pad token).
    """
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    ensure_pad_token(model, tokenizer, padding_side="right")  # the score is read at the last non-pad token
    model.eval()
    return model, tokenizer


def reward_text(prompt: str, response: str, eos_token: str | None) -> str:
    """The text a reward model scores: prompt, response and EOS (as TRL's `RewardTrainer` builds it)."""
    text = prompt + response
    if eos_token and not text.endswith(eos_token):
        text += eos_token
    return text


class RewardScorer:
    """Scores (prompt, response) pairs with a loaded reward model, in batches.

    Attributes:
        forward_passes: Batched forward passes made so far.
        max_length: Longest tokenised text kept (longer ones are truncated on the left, keeping the end).
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, batch_size: int = 16, max_length: int = 512
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.forward_passes = 0

    @torch.no_grad()
    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """The reward logit of each (prompt, response) pair, in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [reward_text(p, r, self.tokenizer.eos_token) for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            ids = [self.tokenizer(t)["input_ids"][-self.max_length :] for t in texts[start : start + self.batch_size]]
            width = max(len(row) for row in ids)
            pad = self.tokenizer.pad_token_id
            # Right padding: the model takes the logit at the rightmost non-pad token of each row.
            input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in ids])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            self.forward_passes += 1
            out.extend(float(v) for v in logits[:, 0].float())
        return out

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """sigmoid(logit) of each (prompt, response) pair, in [0, 1], in input order."""
        return [float(torch.sigmoid(torch.tensor(v))) for v in self.logits(prompts, responses)]
