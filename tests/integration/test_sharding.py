"""Sharded generation and evaluation on a local Ray cluster through prefect-ray equal the unsharded steps.

The test starts a Ray cluster on loopback (2 CPUs) and runs one flow on the stack's Prefect server: the tiny
policy samples 8 prompts x 2 in process and in 2 shards, answers them greedily in process and in 2 shards, and
resamples those answers as `evaluate.resample_failed_working` does, in process and in 2 shards.
Samples are seeded per prompt and each shard decodes whole batches of the unsharded run, so the rows must be
identical; each shard is a task run of the flow run on the server (what the UI shows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the test extra installs ray and prefect-ray")

from prefect import flow  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from configs.schema import CampaignConfig, GenerateConfig, ScaleConfig  # noqa: E402
from models.loading import load_policy  # noqa: E402
from models.sampling import HFSampler  # noqa: E402
from tasks.arithmetic import sample_problems  # noqa: E402
from tasks.evaluate import Evaluation, answer_greedy, evaluate_task, resample_working  # noqa: E402
from tasks.generate import generate_responses  # noqa: E402
from tasks.prompts import prompts_task  # noqa: E402
from tasks.records import ModelRef, read_records  # noqa: E402
from tasks.sharding import map_shards  # noqa: E402
from tasks.tracking import RoundContext, start_run  # noqa: E402

pytestmark = pytest.mark.integration
TEMPLATE = "Question: {prompt}\nAnswer:"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A Ray cluster on loopback with 2 CPUs, owned by this module (map_shards reuses a running one)."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


async def _task_runs(api_url: str, flow_run_id: str) -> dict[str, str]:
    async with get_client() as client:
        assert str(client.api_url).rstrip("/") == api_url.rstrip("/")
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state_name for run in runs}


def test_two_shards_equal_one_process(tiny_dir: Path, stack: dict, api_settings, local_ray: None) -> None:
    rows = [{"id": p["id"], "prompt": p["prompt"]} for p in sample_problems(8, split="train", seed=0)]
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    sample = partial(
        generate_responses,
        cfg=GenerateConfig(k=2, temperature=1.0, max_new_tokens=10, batch_size=8),
        template=TEMPLATE,
        seed=3,
    )
    # Two batches each (16 samples by 8, 8 prompts by 4): a shard takes whole batches of the unsharded run.
    answer = partial(answer_greedy, template=TEMPLATE, max_new_tokens=10, stop=["\n"], batch_size=4)
    resample = partial(  # 16 samples by 8: two batches again
        resample_working,
        k=2,
        temperature=1.0,
        top_p=1.0,
        seed=3,
        template=TEMPLATE,
        max_new_tokens=10,
        stop=["\n"],
        batch_size=8,
    )
    shard = partial(map_shards, policy, shards=2, scale=ScaleConfig(), threads=1)

    @flow(name="sharding-test")
    def sharded() -> tuple[list, list, list, str]:
        generated = shard(rows, sample, field="generate.shards")
        answered = shard(rows, answer, field="evaluate.shards")
        # As if every answer's working failed (evaluate.resample_failed_working).
        resampled = shard(answered, resample, field="evaluate.shards", name="evaluate resampling")
        return generated, answered, resampled, str(flow_run.get_id())

    with api_settings(stack["prefect_api"]):
        generated, answered, resampled, run_id = sharded()
        task_runs = asyncio.run(_task_runs(stack["prefect_api"], run_id))
    engine = HFSampler(*load_policy(str(tiny_dir)))
    assert generated == sample(engine, rows)
    assert answered == answer(engine, rows)
    assert resampled == resample(engine, answered)
    assert [(r["id"], r["sample"]) for r in generated] == [(row["id"], j) for row in rows for j in range(2)]
    assert len({r["response"] for r in generated}) > 4  # really sampled
    steps = ("generate", "evaluate", "evaluate resampling")
    shards = {f"{step} shard {i}/2": "Completed" for step in steps for i in (1, 2)}
    assert task_runs == shards


def test_a_sharded_evaluation_resamples_on_the_shards_and_equals_one_process(
    tiny_dir: Path, tmp_path: Path, stack: dict, api_settings, local_ray: None
) -> None:
    # The evaluate step itself (tasks.evaluate.shard_rows): its greedy pass and its resampling of failed working
    # (evaluate.resample_failed_working) go to 2 Ray shards each and give the rows of one process.
    def config(shards: int) -> CampaignConfig:
        return CampaignConfig.model_validate(
            {
                "model": {"source": "tiny"},
                "prompts": {"validation_size": 16},
                "generate": {"temperature": 1.0, "batch_size": 8},
                "evaluate": {"resample_failed_working": 2, "shards": shards},
                "tracking": {"output_dir": str(tmp_path), "experiment": "sharded-resampling"},
            }
        )

    alone, sharded = config(1), config(2)
    ctx = RoundContext(
        tracking=alone.tracking,
        round=0,
        seed=0,
        folder=str(tmp_path),
        run_id=start_run(alone.tracking, "round-0", params={}, tags={}),
    )
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    prompts = prompts_task.fn(alone, "validation", str(tmp_path / "validation.jsonl"), ctx)

    @flow(name="sharded-evaluation-test")
    def evaluate(cfg: CampaignConfig, out: str) -> tuple[Evaluation, str]:
        return evaluate_task.fn(cfg, policy, prompts, str(tmp_path / out), ctx), str(flow_run.get_id())

    with api_settings(stack["prefect_api"]):
        spread, run_id = evaluate(sharded, "sharded.jsonl")
        task_runs = asyncio.run(_task_runs(stack["prefect_api"], run_id))
        one, _ = evaluate(alone, "alone.jsonl")
    assert read_records(spread.ref) == read_records(one.ref)
    assert spread.metrics["working_fails"] == one.metrics["working_fails"] > 0  # the resampling path ran
    steps = ("evaluate", "evaluate resampling")
    assert task_runs == {f"{step} shard {i}/2": "Completed" for step in steps for i in (1, 2)}
