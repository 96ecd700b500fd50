"""Sample n responses per prompt: the `SamplingEngine` seam and its Hugging Face `generate` implementation.

Tasks talk to a `SamplingEngine`, so another backend (a shared-prefix KV cache, an external server) can
replace `HFSampler` without touching them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

ProgressFn = Callable[[int, int], None]  # (sequences done, sequences in total)


class SamplingEngine(Protocol):
    """Anything that turns templated prompts into n responses each."""

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        batch_size: int,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        """Per prompt (in order), `n` responses cut before the first stop string; temperature 0 is greedy."""
        ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if s and at != -1:
            cut = min(cut, at)
    return text[:cut]


class _StopOnStrings(StoppingCriteria):
    """Per-row stop once the new tokens hold EOS or any stop string; remembers where each row ended.

    transformers 5 accepts a bool tensor of shape (batch,) here and stops rows independently.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_len: int, stop: Sequence[str], eos: set[int]):
        self.tokenizer, self.prompt_len, self.eos = tokenizer, prompt_len, eos
        self.stop = [s for s in stop if s]
        # A stop string of c characters spans at most 4c byte-level tokens, plus one it may start inside.
        self.window = 4 * max((len(s) for s in self.stop), default=0) + 1
        self.ended_at: dict[int, int] = {}  # row -> number of new tokens when it stopped

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for row in range(input_ids.shape[0]):
            if row in self.ended_at:
                done[row] = True
                continue
            last = int(new[row, -1])
            hit = last in self.eos
            if not hit and self.stop:
                tail = self.tokenizer.decode(new[row, -self.window :], skip_special_tokens=True)
                hit = any(s in tail for s in self.stop)
            if hit:
                self.ended_at[row] = new.shape[1]
                done[row] = True
        return done


class HFSampler:
    """A `SamplingEngine` on a transformers causal LM (a `PeftModel` works too).

    Sequences (each prompt repeated n times) are sorted by prompt length and generated `batch_size` at
    a time with left padding, so rows in a batch waste little padding; results return in prompt order.

    Attributes:
        tokens_generated: New tokens produced so far (up to and including each row's EOS or stop
            string), for tokens/s metrics.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, add_special_tokens: bool = True
    ) -> None:
        """Wrap a model and its tokenizer.

        Args:
            model: The policy; used as is (callers put it in eval mode).
            tokenizer: Its tokenizer; it needs a pad token.
            add_special_tokens: Let the tokenizer add its own special tokens (a BOS, say) to each prompt;
                turn off when prompts already carry them.
        """
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token for batched generation (see models.loading)")
        self.model, self.tokenizer = model, tokenizer
        self.add_special_tokens = add_special_tokens
        self.tokens_generated = 0

    def _eos_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured])
        ids.add(self.tokenizer.eos_token_id)
        return {i for i in ids if i is not None}

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        batch_size: int,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        """Generate `n` responses per prompt; see `SamplingEngine.sample`.

        The same arguments give the same responses: each batch reseeds torch's global RNG from `seed`
        and the batch index, so a prompt's samples also depend on which prompts share its batch.
        """
        encoded = [self.tokenizer(p, add_special_tokens=self.add_special_tokens)["input_ids"] for p in prompts]
        jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
        jobs.sort(key=lambda job: len(encoded[job[0]]))  # stable: copies of a prompt stay together
        results: list[list[str]] = [[""] * n for _ in prompts]
        greedy = temperature == 0
        # top_k=0 because the model's generation defaults (top_k=50 globally) would otherwise apply silently.
        options = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature}
        options |= {"top_p": None if greedy else top_p, "top_k": None if greedy else 0}
        eos = self._eos_ids()
        done = 0
        with torch.inference_mode():
            for batch_index, start in enumerate(range(0, len(jobs), batch_size)):
                batch = jobs[start : start + batch_size]
                inputs = self.tokenizer.pad(
                    {"input_ids": [encoded[i] for i, _ in batch]}, padding_side="left", return_tensors="pt"
                ).to(self.model.device)
                prompt_len = inputs["input_ids"].shape[1]
                criteria = _StopOnStrings(self.tokenizer, prompt_len, stop, eos)
                torch.manual_seed(seed * 1_000_003 + batch_index)
                output = self.model.generate(
                    **inputs,
                    **options,
                    max_new_tokens=max_new_tokens,
                    stopping_criteria=StoppingCriteriaList([criteria]),
                    pad_token_id=self.tokenizer.pad_token_id,
                )
                new = output[:, prompt_len:]
                for row, (i, j) in enumerate(batch):
                    length = criteria.ended_at.get(row, new.shape[1])
                    self.tokens_generated += length
                    text = self.tokenizer.decode(new[row, :length], skip_special_tokens=True)
                    results[i][j] = cut_at_stop(text, stop)
                done += len(batch)
                if progress:
                    progress(done, len(jobs))
        return results
