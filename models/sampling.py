"""Sample n responses per prompt: the `SamplingEngine` seam and its KV-cache decoding loop on a transformers model.

Tasks talk to a `SamplingEngine`, so another backend (an external server, say) can replace `HFSampler`
without touching them.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, cast

import torch
from peft import PeftModel
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase, TopPLogitsWarper

from models.greedy_head import ScreenedGreedyHead, screened_head_for

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
        prefix: str = "",
        prompt_ids: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """Per prompt (in order), `n` responses cut before the first stop string; temperature 0 is greedy.

        `prefix` (few-shot examples, say) is put before every prompt; an engine may compute its state once.
        A prompt's samples are seeded by (`seed`, its id in `prompt_ids` (default: its text), sample index)
        only; the floats they are drawn from may still depend on the batch they were computed in (see
        `HFSampler.sample`).
        """
        ...


Job = tuple[int, int]  # (prompt index, sample index): one sequence to generate


def sample_batches(lengths: Sequence[int], n: int, batch_size: int) -> list[list[Job]]:
    """The batches `HFSampler.sample` decodes, in order: every prompt's `n` jobs sorted by the prompt's encoded
    length, cut every `batch_size` jobs.

    The sort is stable, so a prompt's copies stay together and prompts of one length keep their order. The
    one batching rule of the sampler: a shard plan (`tasks.sharding.shard_plan`) reads it to give each shard
    whole batches of the unsharded run. A prompt's copies share a batch unless `batch_size` is not a
    multiple of `n`, when a prompt may straddle two consecutive batches.

    Args:
        lengths: Encoded length of each prompt (what the sampler prefills after any cached prefix).
        n: Samples per prompt.
        batch_size: Jobs per batch (the last batch may be smaller).

    Raises:
        ValueError: `n` or `batch_size` below 1.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"sample_batches: n={n} and batch_size={batch_size} must be at least 1")
    jobs = [(i, j) for i in range(len(lengths)) for j in range(n)]
    jobs.sort(key=lambda job: lengths[job[0]])
    return [jobs[start : start + batch_size] for start in range(0, len(jobs), batch_size)]


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    prefix: str = "",
    *,
    add_special_tokens: bool = True,
    reuse_prefix_cache: bool = True,
) -> tuple[list[int], list[list[int]]]:
    """What `HFSampler.sample` feeds the model: the prefix tokens it caches once, and each row's own tokens.

    The prefix carries the special tokens (BOS); the prompts after it are encoded bare. The cache covers all
    of the prefix but its last token, which goes with each prompt: every row then has at least one token to
    prefill, even for an empty prompt.

    Returns:
        (cached prefix ids, empty without a prefix or reuse; per prompt, the ids prefilled after them).
    """
    head = tokenizer(prefix, add_special_tokens=add_special_tokens)["input_ids"] if prefix else []
    special = add_special_tokens and not prefix
    tails = [tokenizer(p, add_special_tokens=special)["input_ids"] for p in prompts]
    cached = head[:-1] if reuse_prefix_cache else []
    return cached, [head[len(cached) :] + tail for tail in tails]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if s and at != -1:
            cut = min(cut, at)
    return text[:cut]


def sequence_seed(seed: int, prompt_id: str, sample: int) -> int:
    """The RNG seed of one sequence: a hash of (round seed, prompt id, sample index), 63 bits.

    The one seed rule of sampling: a sequence's noise is a function of these three values only.
    """
    digest = hashlib.sha256(f"{seed}\x1f{prompt_id}\x1f{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sequence_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """(len(seeds), steps) uniforms in [0, 1): row r is `steps` draws of a `torch.Generator` seeded `seeds[r]`.

    Drawn once per batch (one small call per row), then indexed per step: the per-prompt seeding costs no
    per-step work in the decoding loop.
    """
    out = torch.empty(len(seeds), steps)
    generator = torch.Generator()
    for row, seed in enumerate(seeds):
        generator.manual_seed(seed)
        torch.rand(steps, generator=generator, out=out[row])
    return out


def draw_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor | None = None
) -> torch.Tensor:
    """One next token per row: argmax at temperature 0, else a draw from softmax(logits / temperature),
    restricted to the nucleus when `top_p` < 1 (no top-k).

    The draw is exact categorical sampling by inverse CDF (one uniform per row: `uniforms[row]` if given,
    else from torch's global RNG; a cumulative sum, a binary search). `torch.multinomial`, which
    `generate` uses, costs ~7x more on a 262k-token vocabulary (Gemma): 0.23 s against 0.03 s of CPU per
    step for 32 rows here. The nucleus is transformers' own `TopPLogitsWarper`, so top-p keeps generate's
    exact semantics.

    Args:
        logits: (rows, vocab) next-token logits.
        temperature: 0 for greedy, else the softmax temperature.
        top_p: Nucleus mass in (0, 1]; 1 keeps the whole vocabulary.

    Returns:
        (rows,) token ids.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / temperature
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    cdf = torch.softmax(scores, dim=-1).cumsum_(dim=-1)
    if uniforms is None:
        uniforms = torch.rand(cdf.shape[0], device=cdf.device)
    u = uniforms.to(cdf.device, cdf.dtype).unsqueeze(1) * cdf[:, -1:]
    # right=True: the first token whose cumulative mass exceeds the draw, never a zero-probability one.
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(1)


class HFSampler:
    """A `SamplingEngine` on a transformers causal LM (a `PeftModel` works too), decoding with a KV cache.

    Sequences (each prompt repeated n times) are sorted by prompt length and generated `batch_size` at
    a time with left padding (`sample_batches`), so rows in a batch waste little padding; results return
    in prompt order.

    Decoding is a hand-written loop over the model's forward with a `DynamicCache` (what `generate`
    uses for Llama and Gemma 3), for two savings `generate` cannot give:

    - a row that has produced EOS or a stop string leaves the batch (its cache rows are dropped), so
      later steps only compute the rows still running;
    - the shared `prefix` (few-shot examples) is run through the model once per `sample` call and its
      KV cache is copied into every batch, so each batch prefills only its own prompts. The padding of
      a batch then sits between the prefix and the prompts: the attention mask hides it and the
      position ids (the mask's cumulative sum, as `generate` computes them) skip it, so every row sees
      the same positions and keys as without reuse. (Gemma 3's sliding-window layers count the window
      in cache slots, padding included: identical as long as a row stays within the 512-token window.)

    Every forward asks for the last position's logits only (`logits_to_keep=1`, as transformers 5.23
    `GenerationMixin.generate` does for every model whose forward accepts it, `generation/utils.py`,
    step 6 of `generate`). Sampling is `draw_tokens`: temperature, optional nucleus, no top-k. Greedy decoding
    on a CPU with bfloat16 instructions takes the body's hidden state instead and its argmax through
    `models.greedy_head.ScreenedGreedyHead` (the float32 argmax at about 0.37x the head's cost).

    Attributes:
        tokens_generated: New tokens produced so far (up to and including each row's EOS or stop
            string), for tokens/s metrics.
    """

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        add_special_tokens: bool = True,
        reuse_prefix_cache: bool = True,
        screen_greedy_head: bool = True,
    ) -> None:
        """Wrap a model and its tokenizer.

        Args:
            model: The policy; used as is (callers put it in eval mode).
            tokenizer: Its tokenizer; it needs a pad token.
            add_special_tokens: Let the tokenizer add its own special tokens (a BOS, say) to each prompt;
                turn off when prompts already carry them.
            reuse_prefix_cache: Compute the KV cache of `sample`'s `prefix` once and reuse it for every
                batch; off, every row prefills prefix and prompt (same outputs, slower; for tests and
                benchmarks).
            screen_greedy_head: At temperature 0, take each step's argmax through a bfloat16 screen of the
                head rescored in float32 (`models.greedy_head`: the float32 argmax, at about 0.37x the head's
                cost) where the CPU has bfloat16 instructions; off, the model's own float32 head.
        """
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token for batched generation (see models.loading)")
        self.model, self.tokenizer = model, tokenizer
        self.add_special_tokens = add_special_tokens
        self.reuse_prefix_cache = reuse_prefix_cache
        self.screen_greedy_head = screen_greedy_head
        self._screened: ScreenedGreedyHead | None | Literal[False] = False  # False: not built yet
        self._body = self._causal_lm().base_model  # the transformer without its head; LoRA layers sit inside
        self.tokens_generated = 0

    def encode(self, prompts: Sequence[str], prefix: str = "") -> tuple[list[int], list[list[int]]]:
        """The cached prefix ids and each prompt's prefilled ids, as `sample` encodes them (`encode_prompts`)."""
        return encode_prompts(
            self.tokenizer,
            prompts,
            prefix,
            add_special_tokens=self.add_special_tokens,
            reuse_prefix_cache=self.reuse_prefix_cache,
        )

    def _eos_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured])
        ids.add(self.tokenizer.eos_token_id)
        return {i for i in ids if i is not None}

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Cache | None,
        head: ScreenedGreedyHead | None = None,
    ) -> tuple[torch.Tensor, Cache]:
        """Last-position logits (float32), or with `head` the last position's hidden state (the body's output,
        before the head), and the grown cache for `ids` following `cache`."""
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "past_key_values": cache}
        if head is not None:
            out = self._body(**inputs, use_cache=True)
            return out.last_hidden_state[:, -1, :], out.past_key_values
        out = self.model(**inputs, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float(), out.past_key_values

    def _greedy_head(self) -> ScreenedGreedyHead | None:
        """The screened head for greedy decoding (built on first use), or None where it does not apply."""
        if self._screened is False:
            causal_lm = self._causal_lm()
            cap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
            head = causal_lm.get_output_embeddings()
            self._screened = screened_head_for(head, cap) if self.screen_greedy_head and head is not None else None
        return self._screened

    def _causal_lm(self) -> PreTrainedModel:
        model = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        return cast(PreTrainedModel, model)

    def _prefix_cache(self, ids: list[int]) -> Cache:
        """The KV cache of `ids` (one row)."""
        tensor = torch.tensor([ids], device=self.model.device)
        _, cache = self._forward(tensor, torch.ones_like(tensor), torch.arange(len(ids)).unsqueeze(0), None)
        return cache

    def _decode(
        self,
        rows: list[list[int]],
        prefix_cache: Cache | None,
        prefix_len: int,
        *,
        uniforms: torch.Tensor,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        eos: set[int],
    ) -> list[list[int]]:
        """New token ids per row (up to and including its EOS or stop string, at most `max_new_tokens`);
        row r's token at step t is drawn with `uniforms[r, t]`."""
        device = self.model.device
        head = self._greedy_head() if temperature == 0 else None
        padded = self.tokenizer.pad({"input_ids": rows}, padding_side="left", return_tensors="pt").to(device)
        ids, mask = padded["input_ids"], padded["attention_mask"]
        cache = None
        if prefix_cache is not None:
            # [cached prefix | padding | rest of prefix + prompt]; the copy grows, the shared cache stays.
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            mask = torch.cat([torch.ones(len(rows), prefix_len, dtype=mask.dtype, device=device), mask], dim=1)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # padding gets 0, as in generate; it is masked
        # The next-token logits, or with the screened head the hidden state it takes.
        last, cache = self._forward(ids, mask, positions[:, prefix_len if cache is not None else 0 :], cache, head)
        next_position = positions[:, -1] + 1

        stops = [s for s in stop if s]
        # A stop string of c characters spans at most 4c byte-level tokens, plus one it may start inside.
        window = 4 * max((len(s) for s in stops), default=0) + 1
        new: list[list[int]] = [[] for _ in rows]
        running = list(range(len(rows)))  # batch row -> original row
        for step in range(max_new_tokens):
            tokens = head(last) if head is not None else draw_tokens(last, temperature, top_p, uniforms[:, step])
            keep = []
            for slot, (row, token) in enumerate(zip(running, tokens.tolist(), strict=True)):
                new[row].append(token)
                ended = token in eos or (
                    stops
                    and any(s in self.tokenizer.decode(new[row][-window:], skip_special_tokens=True) for s in stops)
                )
                if not ended:
                    keep.append(slot)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(running):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, next_position, tokens = mask[index], next_position[index], tokens[index]
                uniforms = uniforms[index]
                running = [running[slot] for slot in keep]
            mask = torch.cat([mask, mask.new_ones(len(running), 1)], dim=1)
            last, cache = self._forward(tokens.unsqueeze(1), mask, next_position.unsqueeze(1), cache, head)
            next_position = next_position + 1
        return new

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
        prefix: str = "",
        prompt_ids: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """Generate `n` responses per prompt; see `SamplingEngine.sample`.

        Sample j of prompt i draws its noise from a generator seeded `sequence_seed(seed, prompt_ids[i], j)`
        (torch's global RNG is untouched). The probabilities the noise is compared with are floats computed
        with the row's batch mates (their padding, the matmul shapes), and rounding can flip a draw: on
        Gemma 3 270M, sampling 64 prompts x 2 at once and as two contiguous halves gave 1 of 128 samples
        different. Batches are therefore a function of the whole call (`sample_batches`), and a shard plan
        that hands each shard whole batches (`tasks.sharding.shard_plan`) reproduces the unsharded samples
        exactly (0 of 128 different on the same Gemma run). Batch size changes the batches, so it can flip
        a draw.
        """
        if prompt_ids is not None and len(prompt_ids) != len(prompts):
            raise ValueError(f"prompt_ids: {len(prompt_ids)} ids for {len(prompts)} prompts")
        ids = list(prompt_ids) if prompt_ids is not None else list(prompts)
        cached, encoded = self.encode(prompts, prefix)
        batches = sample_batches([len(row) for row in encoded], n, batch_size)
        total = len(prompts) * n
        results: list[list[str]] = [[""] * n for _ in prompts]
        eos = self._eos_ids()
        done = 0
        with torch.inference_mode():
            prefix_cache = self._prefix_cache(cached) if cached else None
            for batch in batches:
                if temperature > 0:
                    seeds = [sequence_seed(seed, ids[i], j) for i, j in batch]
                    uniforms = sequence_uniforms(seeds, max_new_tokens)
                else:  # greedy draws nothing
                    uniforms = torch.zeros(len(batch), max_new_tokens)
                new = self._decode(
                    [encoded[i] for i, _ in batch],
                    prefix_cache,
                    len(cached),
                    uniforms=uniforms,
                    temperature=temperature,
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                    stop=stop,
                    eos=eos,
                )
                for (i, j), tokens in zip(batch, new, strict=True):
                    self.tokens_generated += len(tokens)
                    text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                    assert isinstance(text, str)  # decode gives a list only for a batch of sequences
                    results[i][j] = cut_at_stop(text, stop)
                done += len(batch)
                if progress:
                    progress(done, total)
        return results
