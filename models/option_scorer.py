"""Read a causal LM's choice between two option tokens from one forward pass, sharing prefix KV caches.

An LLM judge that answers with one of two words ("yes"/"no", "A"/"B") needs no generation: one forward
pass over the prompt gives the next-token logits, and P(first option) = sigmoid(logit_a - logit_b), the
probability restricted to the two options. Judges such as Meta Ranking ask many questions that share a
long prefix (a reference example, or a target, compared with several others); `OptionScorer` runs each
distinct prefix once, keeps its KV cache and runs only the tails, batched, on top of copies of it.

Tails are padded on the left, between the cached prefix and the tail's first token, with explicit
position ids, so every row's last token sits at the same index and only one position's logits are
computed (the vocabulary head dominates a forward pass of a small model with a large vocabulary).
Sequences scored without a cache are padded the same way, so both paths see identical positions and
token ids and agree to float rounding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

ProgressFn = Callable[[int, int], None]  # (comparisons done, comparisons in total)


@dataclass(frozen=True)
class PrefixGroup:
    """Prompts that share a prefix: `prefix + tail` for every tail."""

    prefix: str
    tails: list[str]


class GroupScorer(Protocol):
    """What `score_keyed` needs: `OptionScorer.score`'s signature."""

    def score(
        self, groups: Sequence[PrefixGroup], *, reuse_cache: bool = True, progress: ProgressFn | None = None
    ) -> list[list[float]]: ...


def score_keyed(
    scorer: GroupScorer,
    prompts: Iterable[tuple[Hashable, str, str]],
    *,
    reuse_cache: bool = True,
    progress: ProgressFn | None = None,
) -> dict[Hashable, float]:
    """`scorer.score` on `(key, prefix, tail)` prompts, grouped here by their prefix; P(option a) by key."""
    groups: dict[str, list[tuple[Hashable, str]]] = {}
    for key, prefix, tail in prompts:
        groups.setdefault(prefix, []).append((key, tail))
    ordered = list(groups.items())
    probs = scorer.score(
        [PrefixGroup(prefix, [tail for _, tail in items]) for prefix, items in ordered],
        reuse_cache=reuse_cache,
        progress=progress,
    )
    return {
        key: p for (_, items), ps in zip(ordered, probs, strict=True) for (key, _), p in zip(items, ps, strict=True)
    }


class OptionScorer:
    """P(option a) against option b after prompts, one forward pass per batch, prefix caches reused.

    Attributes:
        options: The two option strings compared.
        forward_passes: Model calls made so far (prefills and batched tail passes).
        tokens: Token positions fed to the model so far, padding included (the compute actually spent).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        options: tuple[str, str] = (" yes", " no"),
        *,
        batch_size: int = 16,
    ) -> None:
        """Wrap a loaded causal LM.

        Args:
            model: A causal LM in eval mode (its forward accepts `past_key_values`, `position_ids`,
                `logits_to_keep`, as transformers' decoder-only models do).
            tokenizer: Its tokenizer; a BOS is added before each prefix when the tokenizer adds one.
            options: The two option strings. Tokens they share at the start (a lone space token, say) are
                appended to every prompt, and the first tokens where they differ are compared.
            batch_size: Tails (or whole prompts) per forward pass.

        Raises:
            ValueError: if one option's tokens are a prefix of the other's, or `batch_size` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.model, self.tokenizer, self.batch_size, self.options = model, tokenizer, batch_size, options
        a, b = (list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in options)
        shared = 0
        while shared < min(len(a), len(b)) and a[shared] == b[shared]:
            shared += 1
        if shared == min(len(a), len(b)):
            raise ValueError(f"options {options!r} cannot be told apart by one token of this tokenizer")
        self.lead_ids, self.option_ids = a[:shared], (a[shared], b[shared])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.forward_passes = 0
        self.tokens = 0

    def encode_prefix(self, text: str) -> list[int]:
        """Token ids of a prompt's start, with the tokenizer's special tokens (BOS)."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_tail(self, text: str) -> list[int]:
        """Token ids of a prompt's continuation, without special tokens, then the options' shared lead tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + self.lead_ids

    @torch.no_grad()
    def score(
        self, groups: Sequence[PrefixGroup], *, reuse_cache: bool = True, progress: ProgressFn | None = None
    ) -> list[list[float]]:
        """P(option a) / (P(option a) + P(option b)) after every `prefix + tail`, per group and tail.

        With `reuse_cache`, each group costs one prefill of its prefix plus ceil(tails / batch_size)
        passes over the tails; without, all prompts are scored whole, ceil(prompts / batch_size) passes
        over prompts sorted by length.

        Args:
            groups: Prompts grouped by shared prefix.
            reuse_cache: Run each prefix once and reuse its KV cache for the group's tails.
            progress: Called with (done, total) comparisons after each batch.

        Returns:
            One list per group, one probability per tail, in input order.
        """
        encoded = [(self.encode_prefix(g.prefix), [self.encode_tail(t) for t in g.tails]) for g in groups]
        for _, tails in encoded:
            if any(not tail for tail in tails):
                raise ValueError("every tail must encode to at least one token")
        total, done = sum(len(tails) for _, tails in encoded), 0
        out: list[list[float]] = [[math.nan] * len(tails) for _, tails in encoded]
        if reuse_cache:
            for index, (prefix, tails) in enumerate(encoded):
                if not tails:
                    continue
                cache = self._prefill(prefix)
                for start in range(0, len(tails), self.batch_size):
                    batch = tails[start : start + self.batch_size]
                    out[index][start : start + len(batch)] = self._forward(batch, cache, len(prefix))
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
            return out
        flat = [(g, t, prefix + tail) for g, (prefix, tails) in enumerate(encoded) for t, tail in enumerate(tails)]
        flat.sort(key=lambda item: len(item[2]))  # less padding per batch
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            for (g, t, _), p in zip(chunk, self._forward([ids for _, _, ids in chunk], None, 0), strict=True):
                out[g][t] = p
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        return out

    def _prefill(self, prefix: list[int]) -> Cache:
        """Run a prefix alone (batch 1) and return its KV cache."""
        ids = torch.tensor([prefix])
        result = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        self.forward_passes += 1
        self.tokens += len(prefix)
        return result.past_key_values

    def _forward(self, rows: list[list[int]], cache: Cache | None, prefix_len: int) -> list[float]:
        """One pass over left-padded rows (after a shared cached prefix, if any); P(option a) per row."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        # Real tokens continue the prefix's positions; padding gets a harmless position and is masked out.
        positions = (prefix_len + mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs: dict = {}
        if cache is not None:
            past = copy.deepcopy(cache)  # the forward appends to the cache; the group's original stays clean
            if len(rows) > 1:
                past.batch_repeat_interleave(len(rows))
            kwargs["past_key_values"] = past
            mask = torch.cat([torch.ones((len(rows), prefix_len), dtype=torch.long), mask], dim=1)
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=cache is not None,
            logits_to_keep=1,
            **kwargs,
        ).logits[:, -1, :]
        self.forward_passes += 1
        self.tokens += len(rows) * width
        a, b = self.option_ids
        return torch.sigmoid(logits[:, a].float() - logits[:, b].float()).tolist()


def with_options(scorer: OptionScorer, options: tuple[str, str]) -> OptionScorer:
    """`scorer` itself if it reads `options`, else a new scorer over the same model reading them."""
    if scorer.options == options:
        return scorer
    return OptionScorer(scorer.model, scorer.tokenizer, options, batch_size=scorer.batch_size)
