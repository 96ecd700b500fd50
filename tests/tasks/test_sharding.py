"""Shard splitting and the bad inputs of scaling out: shard counts, an unanswering Ray address, storage URLs."""

from __future__ import annotations

import socket
import time

import pytest
from pydantic import ValidationError

from configs.loader import ConfigError, load_config
from configs.schema import CampaignConfig
from configs.schema_scale import StorageConfig
from flows.campaign_state import outside_identity
from tasks.sharding import check_ray_address, split_shards

ROWS = [{"id": str(i)} for i in range(7)]


def test_split_shards_is_contiguous_balanced_and_in_order() -> None:
    parts = split_shards(ROWS, 3, "generate.shards")
    assert [[r["id"] for r in part] for part in parts] == [["0", "1", "2"], ["3", "4"], ["5", "6"]]
    assert split_shards(ROWS, 1, "f") == [ROWS] and len(split_shards(ROWS, 7, "f")) == 7
    for bad in (0, 8):
        with pytest.raises(ValueError, match=rf"^generate.shards={bad}: needs 1 to 7 shards"):
            split_shards(ROWS, bad, "generate.shards")


def test_shard_counts_outside_one_to_prompts_are_config_errors() -> None:
    assert CampaignConfig(generate={"shards": 64}).generate.shards == 64  # train_size 64: one prompt per shard
    with pytest.raises(ValidationError, match="generate.shards=65 is more shards than prompts .prompts.train_size=64"):
        CampaignConfig(generate={"shards": 65})
    with pytest.raises(ValidationError, match="evaluate.shards=9 is more shards than prompts .prompts.validation_size"):
        CampaignConfig(evaluate={"shards": 9}, prompts={"validation_size": 8})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        CampaignConfig(evaluate={"shards": 0})
    # Speed and place only: shards, the cluster and the storage leave a campaign's identity alone.
    assert all(outside_identity(f) for f in ("generate.shards", "evaluate.shards", "scale.ray_address", "storage.base"))
    assert not outside_identity("generate.k")


def test_an_unanswering_ray_address_fails_fast_naming_it() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"^scale.ray_address=ray://127.0.0.1:{port}: no Ray cluster answered"):
        check_ray_address(f"ray://127.0.0.1:{port}", timeout=2.0)
    assert time.perf_counter() - started < 3.0
    # A routable address that drops packets: the timeout bounds the wait (TEST-NET-1, RFC 5737).
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"^scale.ray_address=192.0.2.1:6379: no Ray cluster answered within 1 s"):
        check_ray_address("192.0.2.1:6379", timeout=1.0)
    assert time.perf_counter() - started < 2.5
    with pytest.raises(ValueError, match="expected host:port"):
        check_ray_address("localhost", timeout=1.0)


def test_storage_base_is_a_folder_or_an_installed_filesystem(tmp_path) -> None:
    assert StorageConfig().root("runs").name == "runs"  # empty: tracking.output_dir, as before
    assert StorageConfig(base=str(tmp_path)).root("runs") == tmp_path
    assert StorageConfig(base=f"file://{tmp_path}/team").root("runs") == tmp_path / "team"
    # Through the loader, as users meet them: one line naming the field.
    with pytest.raises(ConfigError, match=r"^storage.base: nosuch://x: no installed fsspec filesystem for 'nosuch://'"):
        load_config("tiny", ["storage.base=nosuch://x"])
    # memory:// has an installed filesystem, but a campaign folder cannot live on it yet: said plainly.
    with pytest.raises(ConfigError, match=r"^storage.base: memory://team: 'memory://' is installed but[^\n]*$"):
        load_config("tiny", ["storage.base=memory://team"])
