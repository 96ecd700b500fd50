"""Load a policy (base weights plus an optional LoRA adapter) ready for batched generation or training.

Whatever the source, the policy comes back on the CPU in float32 (a trainer may ask for bfloat16 base
weights, `train.base_dtype`), in eval mode, with a tokenizer that pads on the left with a pad token distinct
from EOS whenever the model allows one. A pad equal to EOS would let SFT collators mask the EOS labels too,
and the policy would never learn to stop.

The stages of a round (generate, judge, train, evaluate) each need the policy; in one process they share
what is costly to load through `PolicyCache` (module instance `POLICIES`, used by `shared_policy`):

- tokenizers, per base: Gemma's 262k-token `tokenizer.json` takes 4-15 s to parse here, most of a load,
  while its weights come from a memory-mapped safetensors file in under a second;
- read-only policies (base plus adapter, eval mode, frozen), a few at a time (LRU), for generation,
  judging and evaluation: the candidate a round evaluates is the policy the next round samples from. A LoRA
  adapter is merged into the policy's private copy of the base weights (`merged_for_inference`): decoding then
  runs one product per adapted layer instead of three (benchmarks/merged_lora.py: 0.87-0.89x the CPU time of a
  greedy pass of Gemma, 0.91-0.94x of a sampling pass, the same responses).

Training never takes a cached model: `load_policy(..., trainable=True)` builds a private copy of the
weights (cheap, see above) around the shared tokenizer, so an optimiser step, an injected LoRA layer or a
config change made by a trainer can never leak into a policy another stage reads. (Unloading a trained
LoRA from a cached base would save under a second a round and trust every trainer to restore everything
it touched.) The tokenizer is safe to share: selftrain's trainers never change it (TRL does only when
given `eos_token` or `chat_template_path`), and every hand-out resets its padding.

Entries are keyed by content, never by path alone: the base directory's file sizes and modification
times and the adapter's bytes (sha256), so an adapter folder rewritten in place (a resumed round) or a
rebuilt base is loaded afresh, never served stale.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast, overload

import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.cache_size import cache_size
from models.integrity import check_record, has_record

logger = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
# Tokenizer attributes callers set (ensure_pad_token, TRL, tests): restored on every hand-out of a shared one.
TOKENIZER_STATE = (
    "pad_token",
    "eos_token",
    "bos_token",
    "unk_token",
    "padding_side",
    "truncation_side",
    "chat_template",
    "model_max_length",
)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@cache
def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively: AVX512-BF16 or AMX-BF16 among its Linux flags
    (`/proc/cpuinfo`). Elsewhere oneDNN emulates bfloat16 and a Gemma SFT step ran 5.5x slower (shared NOTES)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_train_dtype(name: str) -> str:
    """`train.base_dtype` or `train.head_dtype` on this machine: "float32" or "bfloat16" as named, "auto" as
    `cpu_has_bfloat16`."""
    if name == "auto":
        return "bfloat16" if cpu_has_bfloat16() else "float32"
    if name not in DTYPES:
        raise ValueError(f"training dtype {name!r}: expected auto, float32 or bfloat16")
    return name


def set_torch_threads(n: int) -> None:
    """Limit torch to `n` intra-op threads (and inter-op threads while that can still change).

    One thread per process is steadier than torch's default when other processes share the cores.
    Safe to call any number of times.
    """
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            # torch allows this only once, before any inter-op parallel work; afterwards it is fixed.
            logger.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())


def ensure_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, padding_side: str = "left") -> None:
    """Give the tokenizer a pad token distinct from EOS without resizing the model, where possible; the model's
    config (and generation config, if any) pads with the same id.

    Policies pad on the left (generation continues from the right end of every row); a reward model reads
    the logit at the last non-pad token, so it pads on the right, and a pad equal to EOS would skip the EOS
    every scored text ends with.

    Args:
        model: The model the tokenizer feeds (its embedding rows bound the token ids).
        tokenizer: Changed in place.
        padding_side: "left" for policies, "right" for sequence scorers.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos:
        weight = model.get_input_embeddings().weight
        assert isinstance(weight, torch.Tensor)  # nn.Module attributes are typed Tensor | Module
        embedding_rows = weight.shape[0]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != eos:
            tokenizer.pad_token = tokenizer.unk_token
        elif len(tokenizer) < embedding_rows:
            # Spare embedding rows (vocabularies padded to a multiple of 64, say) hold a new token for free;
            # its weights never matter because padded positions are masked out.
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        elif tokenizer.pad_token_id is None:
            logger.warning("no token can serve as pad without resizing the model; padding with EOS")
            tokenizer.pad_token = tokenizer.eos_token
        else:
            logger.warning("pad token equals EOS and no other token is free; keeping it")
    tokenizer.padding_side = padding_side
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id  # the same config unless composite
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


@overload
def load_policy(
    base: str, adapter: None = None, *, trainable: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]: ...
@overload
def load_policy(
    base: str, adapter: str | None, *, trainable: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]: ...
def load_policy(
    base: str, adapter: str | None = None, *, trainable: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, optionally with a LoRA adapter on top.

    Args:
        base: A local directory or a hub id. Nothing forces a download: with `HF_HUB_OFFLINE=1` a hub id
            resolves from the local cache only.
        adapter: A directory written by `PeftModel.save_pretrained`, or None for the bare base model.
        trainable: Load the adapter's weights as trainable (PEFT loads them frozen by default).
        dtype: The base weights' dtype (`train.base_dtype` for a trainer: bfloat16 only pays on CPUs with
            bfloat16 instructions). An adapter stays float32 (PEFT's `autocast_adapter_dtype`).

    Returns:
        The model (a `PeftModel` when `adapter` is given) in `dtype` and eval mode, and its tokenizer
        padding on the left. The weights are always a private copy the caller may train; the tokenizer is
        this process's shared one (`POLICIES.tokenizer`), which callers use but do not change.

    Raises:
        DamagedModelError: a directory selftrain built whose files changed since (`models.integrity`).
    """
    return _load(base, adapter, trainable, POLICIES.tokenizer(base), dtype)


def _load(
    base: str,
    adapter: str | None,
    trainable: bool,
    tokenizer: PreTrainedTokenizerBase,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """`load_policy`'s loading, around a given tokenizer."""
    if has_record(Path(base)):  # built by selftrain: a stat per file, a hash only for a file whose mtime changed
        check_record(Path(base), fix=f"`selftrain run` rebuilds it, or clear it with `rm -rf {base}`")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    ensure_pad_token(model, tokenizer)
    policy: PreTrainedModel | PeftModel = model
    if adapter is not None:
        policy = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    policy.eval()
    return policy, tokenizer


def merged_for_inference(policy: PreTrainedModel | PeftModel) -> PreTrainedModel | PeftModel:
    """A LoRA policy with its adapter merged into its base weights (PEFT's `merge_and_unload`): the plain model,
    computing `(W + scale * B @ A) x` where PEFT's layers compute `W x + scale * B (A x)`. The same function,
    rounded once in the merged weights instead of in each product: the default campaign gave every one of its
    3,595 responses the same, text for text, before and after its policies were merged
    (benchmarks/results/warm_start_rounds.txt section 48).

    Merging writes into the base weights, so `policy` must own them (as every `_load` does); the adapter can no
    longer be disabled, so this is for read-only policies (`PolicyCache`), never for a trainer or for a scorer
    that needs the base back (`disable_adapter`). A policy without an adapter, or with an adapter other than
    LoRA, is returned as it is.
    """
    if not isinstance(policy, PeftModel):
        return policy
    if not all(isinstance(config, LoraConfig) for config in policy.peft_config.values()):
        return policy
    return cast(PreTrainedModel, policy.merge_and_unload())  # the base model, in eval mode as `_load` left it


@dataclass(frozen=True)
class PolicyKey:
    """What a loaded policy's weights depend on: the base (path or hub id, and its files' sizes and mtimes),
    the adapter (path and content hash) and the dtype. Torch's thread count is global, not part of a model."""

    base: str
    base_files: tuple[tuple[str, int, int], ...]
    adapter: str | None
    adapter_sha256: str
    dtype: str = "float32"

    @property
    def base_key(self) -> tuple[str, tuple[tuple[str, int, int], ...]]:
        """The part that identifies the base alone (what a tokenizer depends on)."""
        return self.base, self.base_files


def _files_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime in ns) of each visible top-level file (what `from_pretrained` reads), sorted by name."""
    if not directory.is_dir():
        return ()  # a hub id: its snapshot is immutable once resolved
    state = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith("."):  # hidden: selftrain's own records, rewritten freely
            stat = entry.stat()
            state.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(state)


def _adapter_sha256(directory: Path) -> str:
    """sha256 over every file of an adapter folder (relative names and bytes): ~30 ms for Gemma's 15 MB."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(directory)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def policy_key(base: str, adapter: str | None = None) -> PolicyKey:
    """The cache key of a policy, read from its files now (so a changed file gives a new key)."""
    base_path = Path(base).expanduser()
    base_id = str(base_path.resolve()) if base_path.is_dir() else base
    if adapter is None:
        return PolicyKey(base_id, _files_state(base_path), None, "")
    adapter_path = Path(adapter).expanduser().resolve()
    return PolicyKey(base_id, _files_state(base_path), str(adapter_path), _adapter_sha256(adapter_path))


class PolicyCache:
    """Tokenizers per base and up to `size` read-only policies, kept loaded in this process (thread-safe).

    Attributes:
        hits: Policies served from memory so far.
        misses: Policies loaded so far.
    """

    def __init__(self, size: int | None = None) -> None:
        """Args:
        size: Read-only policies kept (least recently used dropped first); None reads `SELFTRAIN_POLICY_CACHE`
            (default 2); 0 keeps nothing, not even tokenizers (every load as without a cache). Tokenizers of
            as many bases are kept.
        """
        self._size = size  # None: read from the environment at first use (`cache_size`), never at import
        self._policies: OrderedDict[PolicyKey, PreTrainedModel | PeftModel] = OrderedDict()
        self._tokenizers: OrderedDict[tuple, tuple[PreTrainedTokenizerBase, dict[str, object]]] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = self.misses = 0

    @property
    def size(self) -> int:
        """Read-only policies kept (and tokenizers of as many bases).

        Raises:
            ValueError: `SELFTRAIN_POLICY_CACHE` is not a whole number of 0 or more (`cache_size`).
        """
        if self._size is None:
            self._size = cache_size()
        return self._size

    def tokenizer(self, base: str) -> PreTrainedTokenizerBase:
        """The base's tokenizer, parsed once per content of its directory; `load_policy` sets its padding.

        A caller may have changed the shared object (its pad token, padding side or chat template, say):
        every hand-out first restores the attributes it had when parsed (`TOKENIZER_STATE`).
        """
        key = policy_key(base).base_key
        with self._lock:
            if key in self._tokenizers:
                self._tokenizers.move_to_end(key)
                tokenizer, state = self._tokenizers[key]
                for name, value in state.items():
                    if getattr(tokenizer, name) != value:
                        setattr(tokenizer, name, value)
                return tokenizer
            tokenizer = AutoTokenizer.from_pretrained(base)
            if self.size > 0:
                self._tokenizers[key] = (tokenizer, {name: getattr(tokenizer, name) for name in TOKENIZER_STATE})
                while len(self._tokenizers) > self.size:
                    self._tokenizers.popitem(last=False)
            return tokenizer

    def policy(
        self, base: str, adapter: str | None = None
    ) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
        """A read-only policy (eval mode, a LoRA adapter merged into the weights: `merged_for_inference`): from
        memory when the same base and adapter bytes were loaded before, else loaded by `load_policy`, merged and
        kept. Callers must not train or change it."""
        key = policy_key(base, adapter)
        with self._lock:
            model = self._policies.get(key)
            if model is not None:
                self._policies.move_to_end(key)
                self.hits += 1
                tokenizer = self.tokenizer(base)
                # A PeftModel forwards attribute reads (config, embeddings) to its base model.
                ensure_pad_token(cast(PreTrainedModel, model), tokenizer)
                model.eval()
                return model, tokenizer
            self.misses += 1
            model, tokenizer = _load(base, adapter, False, self.tokenizer(base))
            model = merged_for_inference(model)
            if self.size > 0:
                self._policies[key] = model
                while len(self._policies) > self.size:
                    self._policies.popitem(last=False)
            return model, tokenizer

    def clear(self) -> None:
        """Forget every policy and tokenizer (their memory is freed once no caller holds them)."""
        with self._lock:
            self._policies.clear()
            self._tokenizers.clear()


POLICIES = PolicyCache()


@overload
def shared_policy(base: str, adapter: None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]: ...
@overload
def shared_policy(base: str, adapter: str | None) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]: ...
def shared_policy(base: str, adapter: str | None = None) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """`load_policy(base, adapter)` for readers (generation, judging, evaluation), served from `POLICIES`, a LoRA
    adapter merged into the weights (`merged_for_inference`).

    The model is shared with the other stages of this process: use it for inference only.
    """
    return POLICIES.policy(base, adapter)
