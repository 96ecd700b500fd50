"""Split a step's prompts across Ray workers through prefect-ray, each worker loading the policy once.

`map_shards` is called inside a Prefect task (generate, evaluate) with `shards` > 1. It opens prefect-ray's
`RayTaskRunner` (a local Ray cluster on loopback, or `scale.ray_address`) and submits one `shard` task per
contiguous slice of the prompts, so the Prefect UI shows every shard as a task run of the campaign's flow
run, with its own logs and duration. The shard tasks report to the Prefect API themselves, from the Ray
workers: the API URL of the driver (a real server, or the embedded temporary one) is put into the settings
they inherit; left unset, each worker starts a temporary server of its own (30 s each, measured) whose runs
no UI shows. Shards are not cached (the enclosing step is); their rows come back through Ray's object store.

Samples are seeded per prompt (`models.sampling.sequence_seed`), so the concatenated shards equal the
unsharded step exactly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL, temporary_settings

from configs.schema_scale import ScaleConfig
from models.loading import set_torch_threads, shared_policy
from models.sampling import HFSampler, SamplingEngine
from tasks.records import ModelRef, Record

ShardStep = Callable[[SamplingEngine, list[Record]], list[Record]]  # picklable: a module function or partial

# Settings a Ray worker needs from the driver's environment (offline hubs, caches, threads).
_PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "SELFTRAIN_CACHE", "HF_HOME")


def split_shards(rows: Sequence[Record], shards: int, field: str) -> list[list[Record]]:
    """`rows` cut into `shards` contiguous slices whose sizes differ by at most one, in order.

    Raises:
        ValueError: `shards` below 1 or above `len(rows)`, naming `field`.
    """
    if not 1 <= shards <= len(rows):
        raise ValueError(f"{field}={shards}: needs 1 to {len(rows)} shards (one prompt each at most)")
    size, extra = divmod(len(rows), shards)
    bounds = [index * size + min(index, extra) for index in range(shards + 1)]
    return [list(rows[start:end]) for start, end in zip(bounds, bounds[1:], strict=False)]


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
    return step(HFSampler(model, tokenizer), rows)


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
) -> list[Record]:
    """Run `step` on `shards` slices of `rows` as Prefect tasks on Ray; the rows back in order.

    Args:
        policy: The policy every shard loads.
        rows: The step's input records.
        step: What a shard does with its engine and rows (`generate_responses`, greedy answering).
        shards: Slices (and Ray workers), 1..len(rows).
        field: The config field of `shards`, for errors.
        scale: The Ray cluster settings.
        threads: Torch threads per shard.
    """
    parts = split_shards(rows, shards, field)
    runner = ray_task_runner(scale, shards)
    url = _api_url()
    with temporary_settings({PREFECT_API_URL: url} if url else {}), runner:
        futures = [
            runner.submit(
                shard_task.with_options(task_run_name=f"{field.split('.')[0]} shard {index + 1}/{shards}"),
                {"policy": policy, "rows": part, "step": step, "threads": threads},
            )
            for index, part in enumerate(parts)
        ]
        return [row for future in futures for row in future.result()]
