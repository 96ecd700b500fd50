"""The campaign-folder mirror on fsspec's in-process `memory://` filesystem: push, pull, the lock left out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsspec.core import url_to_fs

from tasks.storage_mirror import pull_tree, push_tree


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_then_pull_round_trips_the_folder_without_its_lock(tmp_path: Path) -> None:
    url = f"memory://mirror-unit/{tmp_path.name}/camp-1"
    fs, root = url_to_fs(url)
    local = tmp_path / "camp-1"
    (local / "round-01" / "adapter").mkdir(parents=True)
    (local / ".prefect-results").mkdir()
    (local / "config.json").write_text('{"seed": 0}')
    (local / "round-01" / "selected.jsonl").write_text('{"a": 1}\n')
    (local / "round-01" / "adapter" / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4)
    (local / ".prefect-results" / "0f3a").write_text("result")
    (local / ".lock").write_text("host 123\n")

    pushed = push_tree(local, url, {})
    assert sorted(fs.find(root)) == [
        f"{root}/.prefect-results/0f3a",
        f"{root}/config.json",
        f"{root}/round-01/adapter/adapter_model.safetensors",
        f"{root}/round-01/selected.jsonl",
    ]
    assert ".lock" not in pushed and len(pushed) == 4

    # Nothing changed: nothing sent (a removed remote file stays removed). A changed file (same size) and a
    # new one are sent; the rest are not.
    fs.rm(f"{root}/config.json")
    assert push_tree(local, url, pushed) == pushed and not fs.exists(f"{root}/config.json")
    (local / "round-01" / "selected.jsonl").write_text('{"a": 2}\n')
    os.utime(local / "round-01" / "selected.jsonl", ns=(1, 1))  # a new mtime even on a coarse clock
    (local / "round-02").mkdir()
    (local / "round-02" / "prompts.jsonl").write_text("p\n")
    pushed = push_tree(local, url, pushed)
    assert fs.cat_file(f"{root}/round-01/selected.jsonl") == b'{"a": 2}\n'
    assert fs.cat_file(f"{root}/round-02/prompts.jsonl") == b"p\n"
    assert not fs.exists(f"{root}/config.json")

    # Pulled on "another host": the same files, byte for byte, and no lock; a push right after sends nothing.
    copy = tmp_path / "elsewhere" / "camp-1"
    manifest = pull_tree(url, copy)
    expected = {k: v for k, v in _tree(local).items() if k not in (".lock", "config.json")}
    assert _tree(copy) == expected and set(manifest) == set(expected)
    assert [p.name for p in copy.parent.iterdir()] == ["camp-1"]  # no scratch folder left beside it
    fs.rm(f"{root}/round-02/prompts.jsonl")
    assert push_tree(copy, url, manifest) == manifest and not fs.exists(f"{root}/round-02/prompts.jsonl")


def test_pulling_from_an_empty_mirror_says_so_and_leaves_no_folder(tmp_path: Path) -> None:
    url = f"memory://mirror-unit/{tmp_path.name}/never-pushed"
    with pytest.raises(FileNotFoundError, match=rf"^{url}: nothing stored there to resume from$"):
        pull_tree(url, tmp_path / "copy")
    assert list(tmp_path.iterdir()) == []
