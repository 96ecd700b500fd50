"""Record files: atomic JSONL with content hashes, lineage beside every artifact."""

import json
from pathlib import Path

import pytest

from tasks.records import read_records, sha256_file, write_lineage, write_records


def test_write_and_read_back_with_hash(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "answer": None}, {"id": "b", "prompt": "ü", "answer": "1"}]
    ref = write_records(tmp_path / "x.jsonl", rows)
    assert ref.rows == 2 and ref.sha256 == sha256_file(tmp_path / "x.jsonl")
    assert read_records(ref) == rows
    assert write_records(tmp_path / "y.jsonl", rows).sha256 == ref.sha256  # content-addressed
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_referenced_file_that_is_gone_says_how_to_go_on(tmp_path: Path) -> None:
    # A resumed campaign's cached step hands on its reference; the file may have been deleted since.
    ref = write_records(tmp_path / "selected.jsonl", [{"id": "a"}])
    (tmp_path / "selected.jsonl").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"selected\.jsonl: a step's output is gone .* start over with --fresh$"
    ):
        read_records(ref)
    with pytest.raises(FileNotFoundError, match=r"No such file"):  # a plain path is not a step's output
        read_records(tmp_path / "selected.jsonl")


def test_lineage_sits_beside_files_and_inside_folders(tmp_path: Path) -> None:
    ref = write_records(tmp_path / "x.jsonl", [{"id": "a"}])
    beside = write_lineage(tmp_path / "x.jsonl", data=ref, seed=3)
    assert beside.name == "x.jsonl.lineage.json"
    assert json.loads(beside.read_text()) == {"data": ref.model_dump(mode="json"), "seed": 3}
    (tmp_path / "adapter").mkdir()
    assert write_lineage(tmp_path / "adapter", parent="base").name == "lineage.json"
