"""Content fingerprints of model directories: the sha256 of the bytes `from_pretrained` reads, checked cheaply.

A model's fingerprint is a sha256 over the name and the sha256 of every content file: the top-level files
of its directory (weights, tokenizer, configs; `from_pretrained` reads nothing below), except hidden files
(selftrain's own records) and `lineage.json` (which holds build times, so two identical builds would
differ). It feeds the Prefect cache keys, the registry's base check and `selftrain reproduce`.

Hashing 1.1 GB costs seconds, so no check hashes a file twice: every recorded hash sits beside the file's
size and modification time (ns), and a file is hashed again only when one of them has changed.

- A directory selftrain builds (the tiny model, the converted Gemma) carries a content record,
  `.content.json`, written when it was built. `check_record` compares every file with it: a different
  size is damage, a different mtime costs a full hash, and different bytes are damage
  (`DamagedModelError`). The builders rebuild a damaged entry; elsewhere the error says how to clear it.
- Any other directory (a local model, a hub snapshot) is hashed through a shared cache file keyed by the
  resolved path (`directory_sha256`). A hub blob named by a sha256 (how the hub stores LFS files) is
  checked against its name when it is hashed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

RECORD = ".content.json"
NOT_CONTENT = frozenset({"lineage.json"})
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")

# What a cached checkpoint directory (built or converted by selftrain) must hold; lineage.json is written last.
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "lineage.json",
)


class DamagedModelError(ValueError):
    """A model file no longer holds the bytes it was recorded with; the message names the file and the fix."""


def content_files(directory: Path, patterns: Sequence[str] | None = None) -> list[Path]:
    """The files a fingerprint covers, sorted by name: top-level, not hidden, not `lineage.json`, and
    matching one of `patterns` (shell wildcards) when given."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name not in NOT_CONTENT
        and (patterns is None or any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns))
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def combine(hashes: Mapping[str, str]) -> str:
    """One hex sha256 over (file name, file sha256) pairs in name order."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\n".encode())
    return digest.hexdigest()


def _entry(path: Path, known: Mapping | None) -> tuple[dict, bool]:
    """The file's {size, mtime_ns, sha256}: `known` as it is when size and mtime still match, else hashed anew
    (the second value says whether it was)."""
    stat = path.stat()
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return dict(known), False
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}, True


def _write_json(path: Path, value: object) -> None:
    """Replace `path` atomically (readers see the old or the new file, never a part)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(directory: Path) -> str:
    """Hash every content file of `directory` and record the hashes in its `.content.json`.

    Returns:
        The directory's fingerprint.
    """
    files = {p.name: _entry(p, None)[0] for p in content_files(directory)}
    fingerprint = combine({name: entry["sha256"] for name, entry in files.items()})
    _write_json(directory / RECORD, {"sha256": fingerprint, "files": files})
    return fingerprint


def has_record(directory: Path) -> bool:
    """Whether `directory` carries a content record (intact or not)."""
    return (directory / RECORD).exists()


def check_record(directory: Path, fix: str | None = None) -> str:
    """Check `directory` against its content record and return the recorded fingerprint.

    Unchanged sizes and mtimes cost one `stat` per file. A file whose mtime changed is hashed; when its bytes
    are the recorded ones, the new mtime is recorded (if the directory is writable) so the next check is
    cheap again.

    Args:
        directory: A directory written with `write_record`.
        fix: What the error message tells the user to do; default: delete the directory.

    Raises:
        DamagedModelError: no readable record, a file missing, of another size, or with other bytes.
    """
    remedy = fix or f"clear it with `rm -rf {directory}` (selftrain rebuilds what it built)"
    try:
        record = json.loads((directory / RECORD).read_text(encoding="utf-8"))
        files, fingerprint = dict(record["files"]), str(record["sha256"])
        if not files or combine({name: entry["sha256"] for name, entry in files.items()}) != fingerprint:
            raise ValueError("its hashes do not add up")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DamagedModelError(f"{directory / RECORD}: no readable content record ({error}); {remedy}") from error
    refreshed = False
    for name, known in files.items():
        path = directory / name
        if not path.is_file():
            raise DamagedModelError(f"{path}: missing; {remedy}")
        size = path.stat().st_size
        if size != known["size"]:
            raise DamagedModelError(f"{path}: {size} bytes, {known['size']} when it was built; {remedy}")
        entry, hashed = _entry(path, known)
        if entry["sha256"] != known["sha256"]:
            raise DamagedModelError(f"{path}: its bytes differ from those hashed when it was built; {remedy}")
        files[name], refreshed = entry, refreshed or hashed
    if refreshed:
        with contextlib.suppress(OSError):  # a read-only cache: correct, only slower next time
            _write_json(directory / RECORD, {"sha256": fingerprint, "files": files})
    return fingerprint


def directory_sha256(
    directory: Path, cache_file: Path, patterns: Sequence[str] | None = None, fix: str | None = None
) -> str:
    """The fingerprint of a directory selftrain did not build, hashing only files not already in `cache_file`
    at their current size and mtime.

    Args:
        directory: A model directory (a local model or a hub snapshot, whose files may be symlinks).
        cache_file: A JSON file of known hashes keyed by resolved path (created if missing; a damaged one is
            started afresh).
        patterns: Restrict the content files to these shell wildcards (a hub snapshot may hold files
            another program downloaded).
        fix: What to tell the user when a hub blob does not match the sha256 it is named by.

    Raises:
        DamagedModelError: a file named by a sha256 holds other bytes.
    """
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    hashes, changed = {}, False
    for path in content_files(directory, patterns):
        target = path.resolve()
        entry, hashed = _entry(target, cache.get(str(target)))
        if hashed and _SHA256_NAME.match(target.name) and entry["sha256"] != target.name:
            remedy = fix or f"delete {target}"
            raise DamagedModelError(f"{path}: its bytes do not match the sha256 it is stored under; {remedy}")
        cache[str(target)], changed = entry, changed or hashed
        hashes[path.name] = entry["sha256"]
    if changed:
        cache = {key: value for key, value in cache.items() if Path(key).exists()}  # forget deleted files
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            _write_json(cache_file, cache)
        except OSError:  # an unwritable cache only costs a re-hash next time
            pass
    return combine(hashes)


# What a hub fingerprint covers: what `from_pretrained` reads for a safetensors model (configs, weights,
# tokenizer). Other files (README, ONNX or TF exports) would make the hash depend on what was downloaded.
HUB_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def hub_snapshot(name: str, *, download: bool) -> Path:
    """The local snapshot folder of hub model `name` holding its `HUB_PATTERNS` files.

    Args:
        name: A hub id.
        download: Fetch what is missing (honours `HF_HUB_OFFLINE`); False reads the local cache only.

    Raises:
        OSError: huggingface_hub's errors for a snapshot that is neither cached nor reachable.
    """
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, allow_patterns=list(HUB_PATTERNS), local_files_only=not download))
