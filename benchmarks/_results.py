"""Appending one probe's result to its JSON-lines file under benchmarks/results/ (and showing it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_line(path: Path, result: dict[str, Any]) -> None:
    """Print `result` as one JSON line and append it to `path`."""
    line = json.dumps(result)
    print(line)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
