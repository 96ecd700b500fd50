"""Cache integrity: content records of built models, damaged entries rebuilt or named, real content hashes."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from configs.schema import CampaignConfig
from models import gemma, integrity
from models.gemma import ensure_packaged_gemma, is_complete
from models.integrity import RECORD, REQUIRED_FILES, DamagedModelError, check_record, content_files, write_record
from models.loading import load_policy
from tasks.base_model import ModelSourceError, fingerprint, prepare_base


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
    else:  # same-size garbage past the safetensors header: it would load, with nonsense weights
        with open(path, "r+b") as handle:
            handle.seek(size // 2)
            handle.write(os.urandom(size - size // 2))


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files fully hashed during a test (the real hash still runs)."""
    calls: list[Path] = []
    real = integrity.sha256_file

    def counting(path: Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    return calls


def test_build_records_every_content_file(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    built = quick_build(tmp_path)
    record = json.loads((built / RECORD).read_text())
    names = {p.name for p in content_files(built)}
    assert set(REQUIRED_FILES) - {"lineage.json"} <= names == set(record["files"])
    assert "lineage.json" not in names and "model.safetensors" in names
    assert record["files"]["model.safetensors"]["sha256"] == integrity.sha256_file(built / "model.safetensors")
    assert check_record(built) == record["sha256"] == fingerprint(built)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_tiny_weights_are_detected_and_rebuilt(
    tmp_path: Path, quick_build: Callable[..., Path], how: str
) -> None:
    built = quick_build(tmp_path)
    original = (built / "model.safetensors").read_bytes()
    before = fingerprint(built)
    _damage(built / "model.safetensors", how)

    with pytest.raises(DamagedModelError, match=rf"model\.safetensors.*rm -rf {built}"):
        load_policy(str(built))  # the named error, not a safetensors traceback or nonsense weights
    with pytest.raises(DamagedModelError, match="model.safetensors"):
        fingerprint(built)

    lines: list[str] = []
    assert quick_build(tmp_path, progress=lines.append) == built
    assert any(line.startswith("damaged tiny model, rebuilding it") for line in lines), lines
    assert (built / "model.safetensors").read_bytes() == original  # same seed, same bytes
    assert fingerprint(built) == before
    load_policy(str(built))


def test_a_touched_file_is_hashed_once_then_trusted(
    tmp_path: Path, quick_build: Callable[..., Path], hash_calls: list[Path]
) -> None:
    built = quick_build(tmp_path)
    hash_calls.clear()
    expected = check_record(built)
    assert hash_calls == []  # sizes and mtimes unchanged: no file read
    weights = built / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # e.g. copied by hand
    assert check_record(built) == expected and hash_calls == [weights]
    assert check_record(built) == expected and hash_calls == [weights]  # the new mtime was recorded


def test_missing_or_broken_record_is_rebuilt(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    built = quick_build(tmp_path)
    (built / RECORD).write_text('{"sha256": "0", "files": {')
    with pytest.raises(DamagedModelError, match="no readable content record"):
        check_record(built)
    (built / RECORD).unlink()  # a build made before content records existed
    lines: list[str] = []
    assert quick_build(tmp_path, progress=lines.append) == built
    assert lines and check_record(built) == fingerprint(built)


def test_fingerprint_is_the_content_not_the_place_or_the_build_time(tmp_path: Path, tiny_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    (copy / RECORD).unlink()  # a user's local directory: no record, hashed through the shared cache
    lineage = json.loads((copy / "lineage.json").read_text())
    (copy / "lineage.json").write_text(json.dumps(lineage | {"build_seconds": 99.0}))
    assert fingerprint(copy) == fingerprint(tiny_dir)

    _damage(copy / "model.safetensors", "garbage")  # same size, other bytes
    assert fingerprint(copy) != fingerprint(tiny_dir)


def test_local_directory_is_hashed_once_per_size_and_mtime(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, hash_calls: list[Path]
) -> None:
    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "local"
    shutil.copytree(tiny_dir, local)
    (local / RECORD).unlink()
    config = CampaignConfig(model={"source": "local", "name": str(local)})
    first = prepare_base(config).sha256
    assert len(hash_calls) == len(content_files(local))
    assert prepare_base(config).sha256 == first and len(hash_calls) == len(content_files(local))
    cache = json.loads((tmp_path / "cache" / "fingerprints.json").read_text())
    assert str((local / "model.safetensors").resolve()) in cache


def _fake_hub_cache(root: Path, repo: str, source: Path, *, lfs: bool) -> Path:
    """A Hugging Face cache holding `repo` as huggingface_hub lays it out: blobs, a snapshot of symlinks, a ref."""
    storage = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    for path in content_files(source):
        # LFS files (the weights) are stored under their sha256; small files under a git hash.
        name = integrity.sha256_file(path) if lfs and path.suffix == ".safetensors" else f"{abs(hash(path.name)):040x}"
        shutil.copyfile(path, storage / "blobs" / name)
        (snapshot / path.name).symlink_to(Path("../../blobs") / name)
    (snapshot / "README.md").write_text("not part of the fingerprint\n")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_model_is_hashed_from_its_snapshot(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    snapshot = _fake_hub_cache(tmp_path / "hf", "someone/tiny", tiny_dir, lfs=True)
    ref = prepare_base(CampaignConfig(model={"source": "hub", "name": "someone/tiny"}))
    assert ref.base == "someone/tiny" and ref.sha256 == fingerprint(tiny_dir)  # the bytes, not the id

    weights = (snapshot / "model.safetensors").resolve()
    _damage(weights, "garbage")
    with pytest.raises(DamagedModelError, match="hf cache rm model/someone/tiny"):
        fingerprint("someone/tiny")

    with pytest.raises(ModelSourceError, match="model.name nobody/absent: no local snapshot"):
        prepare_base(CampaignConfig(model={"source": "hub", "name": "nobody/absent"}))


def _fake_convert(calls: list[Path]):
    def convert(package, out: Path, progress) -> dict:
        calls.append(out)
        for name in REQUIRED_FILES:
            if name != "lineage.json":
                (out / name).write_bytes(b"converted " + name.encode() * 1000)
        return {"parameters": 1}

    return convert


def test_gemma_conversion_with_other_bytes_is_converted_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gemma, "convert", _fake_convert(calls))
    final = ensure_packaged_gemma(tmp_path)
    weights = final / "model.safetensors"
    good = weights.read_bytes()
    lineage = json.loads((final / "lineage.json").read_text())
    assert lineage["safetensors_sha256"] == integrity.sha256_file(weights)

    (final / RECORD).unlink()  # converted before content records: checked against the lineage, then recorded
    assert ensure_packaged_gemma(tmp_path) == final and len(calls) == 1 and (final / RECORD).exists()

    _damage(weights, "garbage")
    assert is_complete(final)  # sizes alone cannot see it
    lines: list[str] = []
    assert ensure_packaged_gemma(tmp_path, progress=lines.append) == final
    assert len(calls) == 2 and weights.read_bytes() == good
    assert any(line.startswith("damaged conversion, converting again") for line in lines), lines

    (final / RECORD).unlink()
    _damage(weights, "garbage")  # an old conversion that no longer matches its lineage's hash
    assert ensure_packaged_gemma(tmp_path) == final and len(calls) == 3
    assert check_record(final) == write_record(final)


def test_damaged_tiny_never_loads_as_a_model(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    # Without the record, same-size garbage past the header loads silently: the check is what stops it.
    built = quick_build(tmp_path)
    _damage(built / "model.safetensors", "garbage")
    AutoModelForCausalLM.from_pretrained(built)  # transformers alone does not notice
    with pytest.raises(DamagedModelError):
        load_policy(str(built))
