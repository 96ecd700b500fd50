"""Loading a policy: base alone, base plus a LoRA adapter (frozen or trainable), thread settings, and the
in-process cache that lets a round's stages share a loaded policy without ever serving stale weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

import models.loading
from models.cache_size import CACHE_SIZE_ENV, DEFAULT_CACHE_SIZE
from models.loading import (
    POLICIES,
    PolicyCache,
    ensure_pad_token,
    load_policy,
    resolve_train_dtype,
    set_torch_threads,
    shared_policy,
)


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny model whose B matrices are non-zero, so it changes the outputs."""
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT initialises B to zero: the adapter would be a no-op
                param.normal_(std=0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits


def test_base_is_float32_eval_and_pads_left(tiny_dir: Path) -> None:
    model, tokenizer = load_policy(str(tiny_dir))
    assert not isinstance(model, PeftModel)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_adapter_loads_frozen_by_default(tiny_dir: Path, adapter_dir: Path) -> None:
    base, _ = load_policy(str(tiny_dir))
    model, _ = load_policy(str(tiny_dir), str(adapter_dir))
    assert isinstance(model, PeftModel) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert not torch.allclose(_logits(model), _logits(base))


def test_trainable_adapter_trains_only_lora_weights(tiny_dir: Path, adapter_dir: Path) -> None:
    model, _ = load_policy(str(tiny_dir), str(adapter_dir), trainable=True)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_missing_pad_falls_back_without_resizing(tiny_dir: Path) -> None:
    model, tokenizer = load_policy(str(tiny_dir))
    rows = model.get_input_embeddings().weight.shape[0]
    tokenizer.pad_token = None
    ensure_pad_token(model, tokenizer)  # no unk and no spare row: EOS is the only choice
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert model.get_input_embeddings().weight.shape[0] == rows

    model.resize_token_embeddings(rows + 8)  # spare rows, as in vocabularies padded to a multiple
    tokenizer.pad_token = None
    ensure_pad_token(model, tokenizer)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.pad_token_id < model.get_input_embeddings().weight.shape[0]


def test_set_torch_threads_is_idempotent() -> None:
    set_torch_threads(1)
    set_torch_threads(1)
    assert torch.get_num_threads() == 1


def test_cache_serves_the_same_policy_until_the_adapter_bytes_change(
    tiny_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    cache = PolicyCache(size=2)
    adapter = tmp_path / "adapter"  # one folder, rewritten in place as a resumed round rewrites its adapter
    shutil.copytree(adapter_dir, adapter)
    first, tokenizer = cache.policy(str(tiny_dir), str(adapter))
    again, same_tokenizer = cache.policy(str(tiny_dir), str(adapter))
    assert again is first and same_tokenizer is tokenizer
    assert (cache.hits, cache.misses) == (1, 1)
    before = _logits(first)

    # New bytes under the same path (scaled lora_B): a new policy whose outputs follow the new bytes.
    from safetensors.torch import load_file, save_file

    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v * 3 if "lora_B" in k else v for k, v in weights.items()}, adapter / "adapter_model.safetensors")
    changed, _ = cache.policy(str(tiny_dir), str(adapter))
    assert changed is not first and cache.misses == 2
    assert not torch.allclose(_logits(changed), before)
    fresh, _ = load_policy(str(tiny_dir), str(adapter))
    torch.testing.assert_close(_logits(changed), _logits(fresh))


def test_a_read_only_policy_is_merged_and_decodes_as_the_adapter_does(tiny_dir: Path, adapter_dir: Path) -> None:
    """The cache merges a LoRA adapter into its private weights: the plain model, the adapter's function (logits
    to float32 rounding, the same greedy tokens), and a base loaded afterwards untouched by the merge."""
    from models.sampling import HFSampler

    served, tokenizer = PolicyCache(size=1).policy(str(tiny_dir), str(adapter_dir))
    unmerged, _ = load_policy(str(tiny_dir), str(adapter_dir))
    assert isinstance(unmerged, PeftModel) and not isinstance(served, PeftModel) and not served.training
    assert not any("lora_" in name for name, _ in served.named_parameters())
    torch.testing.assert_close(_logits(served), _logits(unmerged))
    prompts = ["Question: What is 3 + 4?\nAnswer:", "Question: What is 12 - 5?\nAnswer:"]
    for temperature in (0.0, 0.8):
        merged_answers, adapter_answers = (
            HFSampler(model, tokenizer).sample(
                prompts, n=2, temperature=temperature, top_p=1.0, max_new_tokens=12, stop=[], seed=0, batch_size=4
            )
            for model in (served, unmerged)
        )
        assert merged_answers == adapter_answers
    base, _ = load_policy(str(tiny_dir))
    assert not torch.allclose(_logits(base), _logits(served))


def test_cache_drops_the_least_recently_used_and_size_zero_keeps_nothing(tiny_dir: Path, adapter_dir: Path) -> None:
    cache = PolicyCache(size=1)
    base, _ = cache.policy(str(tiny_dir))
    cache.policy(str(tiny_dir), str(adapter_dir))
    assert cache.policy(str(tiny_dir))[0] is not base  # evicted by the adapter policy
    off = PolicyCache(size=0)
    assert off.policy(str(tiny_dir))[0] is not off.policy(str(tiny_dir))[0]
    assert off.tokenizer(str(tiny_dir)) is not off.tokenizer(str(tiny_dir))


def test_training_gets_private_weights_and_a_restored_tokenizer(tiny_dir: Path, adapter_dir: Path) -> None:
    served, tokenizer = shared_policy(str(tiny_dir), str(adapter_dir))
    before = _logits(served)
    trained, train_tokenizer = load_policy(str(tiny_dir), str(adapter_dir), trainable=True)
    assert trained is not served and train_tokenizer is tokenizer  # the tokenizer (the slow part) is shared
    with torch.no_grad():  # what an optimiser step and a careless trainer could do to their model
        for param in trained.parameters():
            param.add_(1.0)
    trained.train()
    tokenizer.padding_side, tokenizer.pad_token = "right", tokenizer.eos_token  # and to the tokenizer
    again, restored = shared_policy(str(tiny_dir), str(adapter_dir))
    assert again is served and not again.training
    torch.testing.assert_close(_logits(again), before)
    assert restored.padding_side == "left" and restored.pad_token_id != restored.eos_token_id
    assert POLICIES.hits >= 1


def test_base_dtype_auto_follows_the_cpus_bfloat16_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_train_dtype("float32") == "float32" and resolve_train_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(models.loading, "cpu_has_bfloat16", lambda: True)
    assert resolve_train_dtype("auto") == "bfloat16"
    monkeypatch.setattr(models.loading, "cpu_has_bfloat16", lambda: False)
    assert resolve_train_dtype("auto") == "float32"
    with pytest.raises(ValueError, match="float16"):
        resolve_train_dtype("float16")


def test_the_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").exists() else ""
    assert models.loading.cpu_has_bfloat16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_bad_policy_cache_size_is_named_where_the_cache_is_used(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(CACHE_SIZE_ENV, value)
    cache = PolicyCache()  # as at import: nothing read yet
    with pytest.raises(ValueError) as raised:
        _ = cache.size
    assert str(raised.value) == (
        f"SELFTRAIN_POLICY_CACHE={value}: not a whole number of 0 or more (the read-only policies each process keeps "
        f"loaded: 0 turns the cache off; unset, {DEFAULT_CACHE_SIZE})"
    )
    assert PolicyCache(size=3).size == 3  # a size given is not read from the environment
    for good, size in (("", DEFAULT_CACHE_SIZE), (" 5 ", 5), ("0", 0)):
        monkeypatch.setenv(CACHE_SIZE_ENV, good)
        assert PolicyCache().size == size


def test_a_bad_policy_cache_size_is_no_traceback_at_import() -> None:
    code = "import models.loading"  # `selftrain run` imports it long before any policy is loaded
    env = {**os.environ, CACHE_SIZE_ENV: "abc"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
