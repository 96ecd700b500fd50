"""Sharded generation and evaluation on a local Ray cluster through prefect-ray equal the unsharded steps.

The test starts a Ray cluster on loopback (2 CPUs) and runs one flow on the stack's Prefect server: the tiny
policy samples 8 prompts x 2 in process and in 2 shards, and answers them greedily in process and in 2 shards.
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

from configs.schema import GenerateConfig, ScaleConfig  # noqa: E402
from models.loading import load_policy  # noqa: E402
from models.sampling import HFSampler  # noqa: E402
from tasks.arithmetic import sample_problems  # noqa: E402
from tasks.evaluate import answer_greedy  # noqa: E402
from tasks.generate import generate_responses  # noqa: E402
from tasks.records import ModelRef  # noqa: E402
from tasks.sharding import map_shards  # noqa: E402

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
    shard = partial(map_shards, policy, shards=2, scale=ScaleConfig(), threads=1)

    @flow(name="sharding-test")
    def sharded() -> tuple[list, list, str]:
        generated = shard(rows, sample, field="generate.shards")
        answered = shard(rows, answer, field="evaluate.shards")
        return generated, answered, str(flow_run.get_id())

    with api_settings(stack["prefect_api"]):
        generated, answered, run_id = sharded()
        task_runs = asyncio.run(_task_runs(stack["prefect_api"], run_id))
    engine = HFSampler(*load_policy(str(tiny_dir)))
    assert generated == sample(engine, rows)
    assert answered == answer(engine, rows)
    assert [(r["id"], r["sample"]) for r in generated] == [(row["id"], j) for row in rows for j in range(2)]
    assert len({r["response"] for r in generated}) > 4  # really sampled
    shards = {f"{step} shard {i}/2": "Completed" for step in ("generate", "evaluate") for i in (1, 2)}
    assert task_runs == shards
