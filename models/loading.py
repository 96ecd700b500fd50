"""Load a policy (base weights plus an optional LoRA adapter) ready for batched generation or training.

Whatever the source, the policy comes back in float32 on the CPU, in eval mode, with a tokenizer that
pads on the left with a pad token distinct from EOS whenever the model allows one. A pad equal to EOS
would let SFT collators mask the EOS labels too, and the policy would never learn to stop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import overload

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.integrity import check_record, has_record

logger = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"


# What a cached checkpoint directory (built or converted by selftrain) must hold; lineage.json is written last.
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "lineage.json",
)


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
    base: str, adapter: None = None, *, trainable: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]: ...
@overload
def load_policy(
    base: str, adapter: str | None, *, trainable: bool = False
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]: ...
def load_policy(
    base: str, adapter: str | None = None, *, trainable: bool = False
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, optionally with a LoRA adapter on top.

    Args:
        base: A local directory or a hub id. Nothing forces a download: with `HF_HUB_OFFLINE=1` a hub id
            resolves from the local cache only.
        adapter: A directory written by `PeftModel.save_pretrained`, or None for the bare base model.
        trainable: Load the adapter's weights as trainable (PEFT loads them frozen by default).

    Returns:
        The model (a `PeftModel` when `adapter` is given) in float32 and eval mode, and its tokenizer
        padding on the left.

    Raises:
        DamagedModelError: a directory selftrain built whose files changed since (`models.integrity`).
    """
    if has_record(Path(base)):  # built by selftrain: a stat per file, a hash only for a file whose mtime changed
        check_record(Path(base), fix=f"`selftrain run` rebuilds it, or clear it with `rm -rf {base}`")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ensure_pad_token(model, tokenizer)
    policy: PreTrainedModel | PeftModel = model
    if adapter is not None:
        policy = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    policy.eval()
    return policy, tokenizer
