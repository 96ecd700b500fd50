"""Shard plans (whole batches of the unsharded run, so equal samples) and the bad inputs of scaling out: shard
counts, an unanswering Ray address, storage URLs."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from configs.loader import ConfigError, load_config
from configs.schema import CampaignConfig, GenerateConfig, ScaleConfig
from configs.schema_scale import StorageConfig
from flows.campaign_state import outside_identity
from models.loading import load_policy
from models.sampling import HFSampler, SamplingEngine, sample_batches
from tasks.arithmetic import sample_problems
from tasks.evaluate import answer_greedy
from tasks.generate import generate_responses
from tasks.records import ModelRef, Record
from tasks.sharding import ENGINE_OPTIONS, check_ray_address, in_prompt_order, map_shards, plan_step, shard_plan
from tests.cli import free_port

TEMPLATE = "Question: {prompt}\nAnswer:"


def test_shard_plan_gives_each_shard_whole_batches_in_sorted_order() -> None:
    # Lengths 3,1,2,1,3,2 with n=2, batch 4: batches hold prompts {1,3}, {2,5}, {0,4} (sorted by length).
    batches = sample_batches([3, 1, 2, 1, 3, 2], 2, 4)
    assert [sorted({i for i, _ in b}) for b in batches] == [[1, 3], [2, 5], [0, 4]]
    # 12 jobs, target 6 per shard: the cut after 4 or after 8 jobs is as near; the first is taken.
    assert shard_plan(batches, 2) == [[1, 3], [0, 2, 4, 5]]
    assert shard_plan(batches, 3) == [[1, 3], [2, 5], [0, 4]]
    assert shard_plan(batches, 1) == [[0, 1, 2, 3, 4, 5]]
    # Fewer batches than shards: one shard per batch, never a split batch.
    assert shard_plan(batches, 5) == [[1, 3], [2, 5], [0, 4]]
    # batch 4 with n=3: prompt 1 straddles batches 1 and 2 (and 3 straddles 2 and 3): one unit, one shard.
    straddling = sample_batches([1, 2, 3, 4], 3, 4)
    assert [[i for i, _ in b] for b in straddling] == [[0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]]
    assert shard_plan(straddling, 2) == [[0, 1, 2, 3]]
    assert shard_plan(sample_batches([1, 2, 3, 4], 2, 4), 2) == [[0, 1], [2, 3]]
    # Balanced by jobs: 56 prompts of one length, n=1, batch 8 (7 batches) into 3 shards of 2, 3, 2 batches
    # (cuts nearest 18.7 and 37.3 jobs: after 16 and 40).
    plan = shard_plan(sample_batches([5] * 56, 1, 8), 3)
    assert [len(part) for part in plan] == [16, 24, 16] and sum(plan, []) == list(range(56))
    # Shard counts outside 1..prompts fail before anything loads, naming the field.
    for bad in (0, 7):
        with pytest.raises(ValueError, match=rf"^generate.shards={bad}: needs 1 to 6 shards"):
            map_shards(ModelRef(source="x", base="/nonexistent"), [{}] * 6, _no_step, **_bad_args(bad))


def _no_step(engine: SamplingEngine, rows: list[Record]) -> list[Record]:
    raise AssertionError("not reached")


def _bad_args(shards: int) -> dict:
    return {"shards": shards, "field": "generate.shards", "scale": ScaleConfig(), "threads": 1}


def test_shard_rows_come_back_in_prompt_order() -> None:
    plan = [[1, 3], [0, 2]]
    outputs = [[{"p": p, "j": j} for p in part for j in (0, 1)] for part in plan]  # two rows per prompt
    assert in_prompt_order(plan, outputs) == [{"p": p, "j": j} for p in range(4) for j in (0, 1)]
    with pytest.raises(ValueError, match="a shard gave 3 rows for 2 prompts"):
        in_prompt_order(plan, [outputs[0][:3], outputs[1]])


def _batch_groups(lengths: list[int], part: list[int], n: int, size: int) -> set[tuple[int, ...]]:
    """The prompt groups of the batches a sampler cuts for the prompts `part` (indices into `lengths`)."""
    return {tuple(sorted({part[i] for i, _ in b})) for b in sample_batches([lengths[i] for i in part], n, size)}


def test_planned_shards_sampled_apart_equal_the_whole_run(tiny_dir: Path) -> None:
    # The problems tokenise to different lengths, so the sampler's batches are not contiguous slices.
    rows = [{"id": p["id"], "prompt": p["prompt"]} for p in sample_problems(12, split="heldout", seed=0)]
    model, tokenizer = load_policy(str(tiny_dir))
    engine = HFSampler(model, tokenizer, **ENGINE_OPTIONS)
    cfg = GenerateConfig(k=2, temperature=1.0, max_new_tokens=6, batch_size=4)
    sample = partial(generate_responses, cfg=cfg, template=TEMPLATE, seed=3)
    answer = partial(answer_greedy, template=TEMPLATE, max_new_tokens=6, stop=["\n"], batch_size=3)
    for step, n, size in ((sample, 2, 4), (answer, 1, 3)):
        plan = plan_step(tokenizer, rows, step, 3)
        assert sorted(sum(plan, [])) == list(range(12)) and len(plan) == 3  # a partition into 3 shards
        whole = step(engine, rows)
        assert len({r["response"] for r in whole}) > 4  # real, varied answers
        assert in_prompt_order(plan, [step(engine, [rows[i] for i in part]) for part in plan]) == whole
        # The batches a shard's sampler cuts are the whole run's; the old contiguous thirds' are not.
        _, encoded = engine.encode([TEMPLATE.format(prompt=r["prompt"]) for r in rows])
        lengths = [len(ids) for ids in encoded]
        unsharded = _batch_groups(lengths, list(range(12)), n, size)
        assert set().union(*(_batch_groups(lengths, part, n, size) for part in plan)) == unsharded
        thirds = [list(range(start, start + 4)) for start in (0, 4, 8)]
        assert not set().union(*(_batch_groups(lengths, part, n, size) for part in thirds)) <= unsharded


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
    port = free_port()  # a port nothing listens on
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
    # An installed non-file filesystem: campaign folders are local working copies under tracking.output_dir,
    # mirrored to <base>/<campaign_id> (tasks/storage_mirror.py).
    mirrored = load_config("tiny", [f"tracking.output_dir={tmp_path}", "storage.base=memory://team"]).storage
    assert mirrored.root(str(tmp_path)) == tmp_path and mirrored.mirror("c-1") == "memory://team/c-1"
    assert StorageConfig(base="memory://").mirror("c-1") == "memory://c-1"
    assert StorageConfig(base=str(tmp_path)).mirror("c-1") == StorageConfig(base=f"file://{tmp_path}").mirror("c") == ""
