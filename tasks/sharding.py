"""Split a step's prompts across Ray workers through prefect-ray, each worker loading the policy once.

`map_shards` is called inside a Prefect task (generate, evaluate) with `shards` > 1. It opens prefect-ray's
`RayTaskRunner` (a local Ray cluster on loopback, or `scale.ray_address`) and submits one `shard` task per
part of the prompts (`shard_plan`), so the Prefect UI shows every shard as a task run of the campaign's flow
run, with its own logs and duration. The shard tasks report to the Prefect API themselves, from the Ray
workers: the API URL of the driver (a real server, or the embedded temporary one) is put into the settings
they inherit; left unset, each worker starts a temporary server of its own (30 s each, measured) whose runs
no UI shows. Shards are not cached (the enclosing step is); their rows come back through Ray's object store.

The rows, put back in prompt order, equal the unsharded step's exactly. Seeding per prompt
(`models.sampling.sequence_seed`) is not enough for that: a draw compares its seeded uniform with
probabilities computed alongside the row's batch mates, and float rounding differs with them (on Gemma 3
270M, 64 prompts x 2 sampled at once and as two contiguous halves: 1 of 128 samples differed). So a shard
gets whole batches of the unsharded run: the driver runs the step once on a `BatchPlanner` (the tokenizer
only, no model) to learn the sampler's batches (`models.sampling.sample_batches`), and `shard_plan` gives
each shard a contiguous run of them in the sampler's order. A shard's sampler, given its prompts in prompt
order, then cuts exactly those batches (on the same Gemma run: 0 of 128 differed). A greedy argmax can flip
the same way, so evaluation shards alike.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL, temporary_settings
from transformers import PreTrainedTokenizerBase

from configs.schema_scale import ScaleConfig
from models.loading import POLICIES, set_torch_threads, shared_policy
from models.sampling import HFSampler, Job, ProgressFn, SamplingEngine, encode_prompts, sample_batches
from tasks.records import ModelRef, Record

ShardStep = Callable[[SamplingEngine, list[Record]], list[Record]]  # picklable: a module function or partial

logger = logging.getLogger(__name__)

# How every shard builds its sampler, and how the driver's planner encodes prompts: one setting for both.
ENGINE_OPTIONS = {"add_special_tokens": True, "reuse_prefix_cache": True}

# Settings a Ray worker needs from the driver's environment (offline hubs, caches, threads).
_PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "SELFTRAIN_CACHE", "HF_HOME")


class BatchPlanner:
    """A `SamplingEngine` that samples nothing: it records the batches an `HFSampler` would decode for the
    call (`sample_batches` on the prompts as `encode_prompts` encodes them) and answers empty strings.

    Attributes:
        batches: The batches of each `sample` call so far, in call order.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Args:
        tokenizer: The policy's tokenizer (the shards' samplers encode with it and `ENGINE_OPTIONS`).
        """
        self.tokenizer = tokenizer
        self.batches: list[list[list[Job]]] = []

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        batch_size: int,
        progress: ProgressFn | None = None,
        prefix: str = "",
        prompt_ids: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """Record this call's batches; `n` empty responses per prompt."""
        _, encoded = encode_prompts(self.tokenizer, prompts, prefix, **ENGINE_OPTIONS)
        self.batches.append(sample_batches([len(row) for row in encoded], n, batch_size))
        return [[""] * n for _ in prompts]


def shard_plan(batches: Sequence[Sequence[Job]], shards: int) -> list[list[int]]:
    """Prompt indices of each shard (ascending): whole batches, contiguous in the sampler's order, balanced by jobs.

    Consecutive batches that share a prompt (`batch_size` not a multiple of `n`) form one unit that a shard
    takes whole. A shard's prompts, in prompt order, are then a contiguous run of the sorted jobs starting at
    a batch boundary, so its sampler cuts the very batches of the unsharded run. There are at most as many
    shards as units: fewer are returned when the prompts make fewer.

    Args:
        batches: The unsharded run's batches (`sample_batches`).
        shards: Shards wanted, at least 1.
    """
    units: list[list[Job]] = []
    for batch in batches:
        if units and units[-1][-1][0] == batch[0][0]:  # the prompt straddles the two batches
            units[-1].extend(batch)
        else:
            units.append(list(batch))
    shards = min(shards, len(units))
    ends = [0]  # jobs in units[:c], for every cut c
    for unit in units:
        ends.append(ends[-1] + len(unit))
    cuts = [0]
    for index in range(1, shards):
        target = index * ends[-1] / shards
        # The cut nearest the target that leaves every shard at least one unit.
        options = range(cuts[-1] + 1, len(units) - (shards - index) + 1)
        cuts.append(min(options, key=lambda cut: abs(ends[cut] - target)))
    cuts.append(len(units))
    return [
        sorted({i for unit in units[start:end] for i, _ in unit}) for start, end in zip(cuts, cuts[1:], strict=False)
    ]


def plan_step(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[Record], step: ShardStep, shards: int
) -> list[list[int]]:
    """`shard_plan` for `step` on `rows`: the step runs once on a `BatchPlanner`, so the plan sees the very
    prompts, prefix, `n` and batch size the step passes its engine.

    Raises:
        ValueError: the step did not sample exactly once.
    """
    planner = BatchPlanner(tokenizer)
    step(planner, list(rows))
    if len(planner.batches) != 1:
        raise ValueError(f"a sharded step must call its engine's sample once, not {len(planner.batches)} times")
    return shard_plan(planner.batches[0], shards)


def in_prompt_order(plan: Sequence[Sequence[int]], outputs: Sequence[Sequence[Record]]) -> list[Record]:
    """The shards' output rows in prompt order; each input row gave the same number of rows, in input order.

    Raises:
        ValueError: a shard's output is not a whole number of rows per input row.
    """
    slots: dict[int, Sequence[Record]] = {}
    for part, out in zip(plan, outputs, strict=True):
        per, left = divmod(len(out), len(part))
        if left:
            raise ValueError(f"a shard gave {len(out)} rows for {len(part)} prompts: not the same number each")
        slots.update({index: out[place * per : (place + 1) * per] for place, index in enumerate(part)})
    return [row for index in sorted(slots) for row in slots[index]]


def check_ray_address(address: str, timeout: float) -> None:
    """Raise unless something accepts a TCP connection at the Ray `address` within `timeout` seconds.

    `ray.init` on an address that does not answer retries for minutes; this fails fast and names it.

    Raises:
        ConnectionError: nothing answered at `address`.
    """
    parsed = urlsplit(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ValueError(f"scale.ray_address={address}: expected host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ConnectionError(
            f"scale.ray_address={address}: no Ray cluster answered within {timeout:g} s ({error})"
        ) from None


def ray_task_runner(scale: ScaleConfig, shards: int):  # -> RayTaskRunner (prefect_ray is an optional extra)
    """prefect-ray's task runner on `scale.ray_address`, else on a new local cluster with `shards` CPUs.

    A cluster already started in this process (`ray.init`) is used as it is.
    """
    from prefect_ray import RayTaskRunner  # imported here: only sharded steps need Ray

    env = {key: os.environ[key] for key in _PASSED_ENV if key in os.environ}
    runtime_env = {"env_vars": env | {"TOKENIZERS_PARALLELISM": "false"}}
    if scale.ray_address:
        check_ray_address(scale.ray_address, scale.connect_timeout)
        return RayTaskRunner(address=scale.ray_address, init_kwargs={"runtime_env": runtime_env})
    local = {"num_cpus": shards, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    return RayTaskRunner(init_kwargs=local | {"runtime_env": runtime_env, "log_to_driver": True})


@task(name="shard", cache_policy=NO_CACHE, persist_result=False)
def shard_task(policy: ModelRef, rows: list[Record], step: ShardStep, threads: int) -> list[Record]:
    """On a Ray worker: load the policy once and run `step` on this shard's rows.

    Ray reuses its worker processes, so the process's policy cache (`shared_policy`) keeps the model for the
    next shard task on the same policy (evaluation after generation, or the next round's generation).
    """
    set_torch_threads(threads)
    model, tokenizer = shared_policy(policy.base, policy.adapter)
    return step(HFSampler(model, tokenizer, **ENGINE_OPTIONS), rows)


def _warn(line: str) -> None:
    """A warning in the Prefect run's log when there is a run (the UI shows it), else in this module's."""
    try:
        get_run_logger().warning(line)
    except MissingContextError:
        logger.warning(line)


def _api_url() -> str | None:
    """The Prefect API this process reports to: the configured one, else the running temporary server's."""
    if url := PREFECT_API_URL.value():
        return url
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the singleton the client started; None when none is running
    return server.api_url if server.server_process is not None else None


def map_shards(
    policy: ModelRef,
    rows: Sequence[Record],
    step: ShardStep,
    *,
    shards: int,
    field: str,
    scale: ScaleConfig,
    threads: int,
    name: str | None = None,
) -> list[Record]:
    """Run `step` on `shards` parts of `rows` (`shard_plan`) as Prefect tasks on Ray; the rows back in order.

    Args:
        policy: The policy every shard loads (the driver reads only its tokenizer, to plan).
        rows: The step's input records.
        step: What a shard does with its engine and rows (`generate_responses`, greedy answering): it calls
            the engine's `sample` once and returns the same number of rows per input row, in input order.
        shards: Parts (and Ray workers), 1..len(rows); fewer run when the rows make fewer batches (each part
            holds whole batches of the unsharded run), which is logged.
        field: The config field of `shards`, for errors.
        scale: The Ray cluster settings.
        threads: Torch threads per shard.
        name: What the shards' task runs are called, `<name> shard i/n`; None: the step `field` configures.

    Raises:
        ValueError: `shards` below 1 or above `len(rows)`, naming `field`.
    """
    if not 1 <= shards <= len(rows):
        raise ValueError(f"{field}={shards}: needs 1 to {len(rows)} shards (one prompt each at most)")
    plan = plan_step(POLICIES.tokenizer(policy.base), rows, step, shards)
    if len(plan) < shards:
        _warn(
            f"{field}={shards}: the {len(rows)} prompts make {len(plan)} parts of whole batches; {len(plan)} shards run"
        )
    runner = ray_task_runner(scale, len(plan))
    url = _api_url()
    name = name or field.split(".")[0]
    with temporary_settings({PREFECT_API_URL: url} if url else {}), runner:
        futures = [
            runner.submit(
                shard_task.with_options(task_run_name=f"{name} shard {index + 1}/{len(plan)}"),
                {"policy": policy, "rows": [rows[i] for i in part], "step": step, "threads": threads},
            )
            for index, part in enumerate(plan)
        ]
        return in_prompt_order(plan, [future.result() for future in futures])
