"""How round data is stored: JSONL record files, their content hashes, and the references tasks pass.

Tasks hand each other `DatasetRef` / `ModelRef` (small, hashable, JSON-able) rather than data or
models: Prefect can persist them cheaply and a content hash makes input-keyed caching exact.

Record shapes (one JSON object per line):
    prompts:   {"id", "prompt", "answer"}                       answer may be null
    generated: prompts + {"sample", "response"}
    judged:    generated + {"score"}
    selected:  judged rows that survived selection
    evaluated: prompts + {"response", "score"}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

Record = dict[str, Any]


class DatasetRef(BaseModel):
    """A record file on disk, identified by its content."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    rows: int


class ModelRef(BaseModel):
    """A policy: a base model plus an optional LoRA adapter directory."""

    model_config = ConfigDict(frozen=True)

    source: str
    base: str
    adapter: str | None = None
    sha256: str = ""

    @property
    def label(self) -> str:
        """A short human name: the base, or the adapter folder when there is one."""
        return self.adapter or f"{self.source}:{self.base}"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_dir(path: str | Path) -> str:
    """Hex SHA-256 over every file in a directory (relative names and bytes, in sorted order)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see either the old content or the whole new one, never a part."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_records(path: str | Path, records: Iterable[Record]) -> DatasetRef:
    """Write records as JSONL atomically and return a reference to the file."""
    rows = list(records)
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    atomic_write_text(path, text)
    return DatasetRef(path=str(Path(path).resolve()), sha256=sha256_file(path), rows=len(rows))


def read_records(ref: DatasetRef | str | Path) -> list[Record]:
    """Read a JSONL record file written by `write_records`.

    Raises:
        FileNotFoundError: a referenced file that is gone, saying what a resume does about it (a step's
            reference can outlive its file: a resumed campaign reuses a finished step's result from Prefect's cache).
    """
    path = ref.path if isinstance(ref, DatasetRef) else str(ref)
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        if not isinstance(ref, DatasetRef):
            raise
        raise FileNotFoundError(
            f"{path}: a step's output is gone since the step wrote it; a resumed campaign reuses finished steps, "
            "so restore the file or start over with --fresh"
        ) from None


def write_lineage(artifact: str | Path, **facts: Any) -> Path:
    """Write `<artifact>.lineage.json` (or `lineage.json` inside a directory) beside an artifact.

    The lineage names what the artifact was made from (parent model, input data hashes, config, seed);
    `selftrain reproduce` reads it back.
    """
    target = Path(artifact)
    lineage = target / "lineage.json" if target.is_dir() else target.with_name(target.name + ".lineage.json")
    atomic_write_text(lineage, json.dumps(_jsonable(facts), indent=2, sort_keys=True) + "\n")
    return lineage


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
