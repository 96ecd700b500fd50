"""Record files: atomic JSONL with content hashes, lineage beside every artifact."""

import json
from pathlib import Path

from tasks.records import read_records, sha256_file, write_lineage, write_records


def test_write_and_read_back_with_hash(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "answer": None}, {"id": "b", "prompt": "ü", "answer": "1"}]
    ref = write_records(tmp_path / "x.jsonl", rows)
    assert ref.rows == 2 and ref.sha256 == sha256_file(tmp_path / "x.jsonl")
    assert read_records(ref) == rows
    assert write_records(tmp_path / "y.jsonl", rows).sha256 == ref.sha256  # content-addressed
    assert not list(tmp_path.glob(".*.tmp"))


def test_lineage_sits_beside_files_and_inside_folders(tmp_path: Path) -> None:
    ref = write_records(tmp_path / "x.jsonl", [{"id": "a"}])
    beside = write_lineage(tmp_path / "x.jsonl", data=ref, seed=3)
    assert beside.name == "x.jsonl.lineage.json"
    assert json.loads(beside.read_text()) == {"data": ref.model_dump(mode="json"), "seed": 3}
    (tmp_path / "adapter").mkdir()
    assert write_lineage(tmp_path / "adapter", parent="base").name == "lineage.json"
