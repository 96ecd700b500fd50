"""Measure the share of one self-training round spent in Prefect and MLflow rather than in the stage bodies.

Runs the real campaign flow on `configs/tiny.yaml` with one round, in a fresh PREFECT_HOME and output
folder, with timers wrapped around (without changing project code):

- each Prefect task body (`Task.fn`) and each task call as the flow body sees it;
- the round subflow call as the campaign sees it, and its body (`Flow.fn`);
- the MLflow-facing functions of `tasks.tracking` (also the names `flows.round` / `flows.campaign` import
  from it), counted once when nested, and the MlflowClient methods and helpers they spend time in.

The machine is shared and noisy, so every figure is read as a ratio within this one run. Prints a table
and writes `benchmarks/results/round_overhead.json`.

Prefect 3.8 ends every flow run by joining a heartbeat thread that sleeps in whole seconds, so each
flow run waits 0-1 s at random; that wait is timed on its own, and the share is also given without it.

Run: `.venv/bin/python benchmarks/round_overhead.py` (under a minute on 2 cores once the tiny model is cached).
"""

# ruff: noqa: E402  (the environment must be set before prefect, mlflow or any project module is imported)

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SCRATCH = Path(tempfile.mkdtemp(prefix="selftrain-bench-"))
os.environ["PREFECT_HOME"] = str(SCRATCH / "prefect-home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no telemetry attempts offline (shared NOTES)
for _key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_key, None)
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools
import json
import platform
import sys
import threading
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mlflow
import mlflow.data
import prefect
import prefect.flow_engine
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import PandasDataset
from prefect import Flow, Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api.server import SubprocessASGIServer

import flows.campaign
import flows.round
import tasks.tracking
from configs.loader import load_config
from models.loading import set_torch_threads
from tasks.base_model import prepare_base

RESULTS = Path(__file__).resolve().parent / "results" / "round_overhead.json"
GOAL = 0.05  # Prefect + MLflow should take at most 5% of a round
TRACKING_FUNCTIONS = ("start_run", "log_metrics", "set_tags", "log_dataset", "log_artifact", "end_run")
TRACKING_HELPERS = ("client_for", "ensure_experiment")  # called inside the above: counted once
CLIENT_METHODS = (
    "__init__",
    "get_experiment_by_name",
    "create_experiment",
    "create_run",
    "log_batch",
    "log_inputs",
    "log_artifact",
    "log_artifacts",
    "set_terminated",
)


@dataclass
class Ledger:
    """Seconds and counts gathered by the wrappers, keyed `scope/name` with scope `campaign` or `round`."""

    body: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    call: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    runs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mlflow_where: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    mlflow_fn: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    mlflow_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    inner: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    heartbeat_join: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    stack: list[str] = field(default_factory=list)
    depth: int = 0  # nesting of MLflow-facing calls: only the outermost one is timed
    inner_depth: int = 0
    threads: set[int] = field(default_factory=set)


LEDGER = Ledger()


def _scope() -> str:
    return "round" if "round" in LEDGER.stack else "campaign"


def _where() -> str:
    top = LEDGER.stack[-1] if LEDGER.stack else "round"
    return f"{_scope()}/{'flow-body' if top == 'round' else top}"  # in a flow body, else in the named task


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_body(obj: Task | Flow, frame: str, label: str) -> None:
    """Replace `obj.fn` (what Prefect's engine calls) by a timer that also marks where MLflow calls happen.

    The timer runs with the wrapped function's globals: Prefect resolves a flow's string annotations
    (`from __future__ import annotations`) in `fn.__globals__` when it validates the parameters. So the
    timer's body may only use names from its closure.
    """
    inner, ledger, scope, clock, ident = obj.fn, LEDGER, _scope, time.perf_counter, threading.get_ident

    def timed(*args: Any, **kwargs: Any) -> Any:
        ledger.threads.add(ident())
        ledger.stack.append(frame)
        key = f"{scope()}/{label}"
        start = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            ledger.body[key] += clock() - start
            ledger.runs[key] += 1
            ledger.stack.pop()

    rebound = types.FunctionType(timed.__code__, inner.__globals__, inner.__name__, None, timed.__closure__)
    obj.fn = functools.update_wrapper(rebound, inner)


def time_call(module: types.ModuleType, attr: str, label: str) -> None:
    """Replace `module.attr` (a task or flow the flow body calls) by a timer of the whole call."""
    setattr(module, attr, _timed_call(getattr(module, attr), label))


def _timed_call(target: Any, label: str) -> Any:
    """A timer of calls to `target`; `.with_options(...)` (the flows use it for cached steps) stays timed."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        key = f"{_scope()}/{label}"
        start = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            LEDGER.call[key] += time.perf_counter() - start

    timed.with_options = lambda **options: _timed_call(target.with_options(**options), label)  # type: ignore[attr-defined]
    return timed


def time_mlflow(owner: Any, attr: str) -> None:
    """Time an MLflow-facing function; only the outermost of nested calls is counted."""
    target = getattr(owner, attr)

    @functools.wraps(target)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if LEDGER.depth:
            return target(*args, **kwargs)
        LEDGER.depth += 1
        start = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            LEDGER.depth -= 1
            LEDGER.mlflow_where[_where()] += spent
            LEDGER.mlflow_fn[f"{_scope()}/{attr}"] += spent
            LEDGER.mlflow_calls[f"{_scope()}/{attr}"] += 1

    setattr(owner, attr, timed)


def time_inner(owner: Any, attr: str, label: str) -> None:
    """Time what an MLflow-facing function spends in one client method or helper (outermost only)."""
    target = getattr(owner, attr)

    @functools.wraps(target)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not LEDGER.depth or LEDGER.inner_depth:
            return target(*args, **kwargs)
        LEDGER.inner_depth += 1
        start = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            LEDGER.inner_depth -= 1
            LEDGER.inner[f"{_scope()}/{label}"] += time.perf_counter() - start

    setattr(owner, attr, timed)


def time_heartbeat_join() -> None:
    """Time how long each flow run waits at its end for Prefect's heartbeat thread (keyed by flow name).

    Prefect 3.8 joins a thread that sleeps in whole seconds, so a flow run's end waits 0-1 s at random.
    """
    original = getattr(prefect.flow_engine, "_send_heartbeats", None)
    if original is None:  # a Prefect without this private helper: nothing to time
        return

    @contextmanager
    def timed(engine: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
        ended = [0.0]
        try:
            with original(engine, *args, **kwargs):
                try:
                    yield
                finally:
                    ended[0] = time.perf_counter()
        finally:
            LEDGER.heartbeat_join[engine.flow.name] += time.perf_counter() - ended[0]

    prefect.flow_engine._send_heartbeats = timed


def instrument() -> None:
    """Wrap the flows' tasks, the round subflow and the MLflow layer; check the flows share the wrapped objects."""
    for module in (flows.round, flows.campaign):
        for attr, obj in list(vars(module).items()):
            if isinstance(obj, Task):
                home = getattr(obj.fn, "__module__", "")
                if getattr(sys.modules.get(home), attr, None) is not obj:
                    raise RuntimeError(f"{module.__name__}.{attr} is not the Task object defined in {home}")
                if not hasattr(obj.fn, "__wrapped__"):  # a task both flows import is wrapped once
                    time_body(obj, obj.name, obj.name)
                time_call(module, attr, obj.name)
    if flows.campaign.round_flow is not flows.round.round_flow:
        raise RuntimeError("flows.campaign.round_flow is not the Flow object defined in flows.round")
    time_body(flows.round.round_flow, "round", "flow-body")
    time_call(flows.campaign, "round_flow", "round-subflow")
    originals = {name: getattr(tasks.tracking, name) for name in TRACKING_FUNCTIONS}
    for name in TRACKING_FUNCTIONS + TRACKING_HELPERS:
        time_mlflow(tasks.tracking, name)
    for module in (flows.round, flows.campaign):
        for name, original in originals.items():
            if getattr(module, name, None) is original:
                setattr(module, name, getattr(tasks.tracking, name))
    for method in CLIENT_METHODS:
        time_inner(MlflowClient, method, f"MlflowClient.{method.strip('_')}")
    time_inner(mlflow.data, "from_pandas", "mlflow.data.from_pandas")
    time_inner(PandasDataset, "_to_mlflow_entity", "PandasDataset._to_mlflow_entity")
    time_inner(tasks.tracking, "read_records", "read_records (log_dataset)")
    time_inner(tasks.tracking, "git_commit", "git_commit (start_run)")
    time_heartbeat_join()


@task(name="bench-noop-task", cache_policy=NO_CACHE)
def _noop_task() -> None:
    return None


@flow(name="bench-empty")
def _empty_flow() -> None:
    return None


@flow(name="bench-probe")
def _probe_flow() -> dict[str, float]:
    """Baselines: the best of five empty task calls and of two empty subflow calls."""
    return {
        "empty_task_call_s": min(_seconds(_noop_task) for _ in range(5)),
        "empty_subflow_call_s": min(_seconds(_empty_flow) for _ in range(2)),
    }


def fixed_costs() -> tuple[dict[str, float], dict[str, float]]:
    """Start the temporary Prefect server and run empty flows before the campaign, timing each."""
    fixed = {"prefect_server_start_s": _seconds(SubprocessASGIServer().start)}
    fixed["first_flow_run_s"] = _seconds(_empty_flow)
    fixed["empty_flow_run_s"] = _seconds(_empty_flow)
    return fixed, _probe_flow()


def verify() -> None:
    """Fail if a task the flows called ran without its timed body (the `.fn` swap missed) or off one thread."""
    called = {k for k in LEDGER.call if not k.endswith("-subflow")}
    if missed := called - set(LEDGER.body):
        raise RuntimeError(f"task calls without a timed body, the .fn wrapper was bypassed: {sorted(missed)}")
    if len(LEDGER.threads) != 1:
        raise RuntimeError("task bodies ran on several threads: MLflow time cannot be attributed to stages")


def round_report() -> dict[str, Any]:
    """Per-stage work, MLflow and Prefect time inside round 1, and the overhead share."""
    stages: dict[str, dict[str, float]] = {}
    for key, body in LEDGER.body.items():
        scope, name = key.split("/", 1)
        if scope == "round" and name != "flow-body":
            mlflow_s = LEDGER.mlflow_where.get(key, 0.0)
            call = LEDGER.call[key]
            stages[name] = {"work_s": body - mlflow_s, "mlflow_s": mlflow_s, "task_run_s": call - body}
            stages[name] |= {"body_s": body, "call_s": call, "runs": LEDGER.runs[key]}
    verify()
    wall = LEDGER.call["campaign/round-subflow"]
    body = LEDGER.body["round/flow-body"]
    tasks_body = sum(s["body_s"] for s in stages.values())
    mlflow_flow_body = LEDGER.mlflow_where.get("round/flow-body", 0.0)
    mlflow_total = sum(v for k, v in LEDGER.mlflow_where.items() if k.startswith("round/"))
    heartbeat = LEDGER.heartbeat_join.get(flows.round.round_flow.name, 0.0)
    prefect_parts = {
        "subflow_heartbeat_join_s": heartbeat,
        "subflow_create_and_finish_s": wall - body - heartbeat,
        "task_runs_s": sum(s["task_run_s"] for s in stages.values()),
        "flow_body_glue_s": body - sum(s["call_s"] for s in stages.values()) - mlflow_flow_body,
    }
    prefect_s = wall - tasks_body - mlflow_flow_body
    share = (prefect_s + mlflow_total) / wall
    return {
        "wall_s": wall,
        "stages": stages,
        "stage_work_s": tasks_body - (mlflow_total - mlflow_flow_body),
        "mlflow_s": mlflow_total,
        "mlflow_in_flow_body_s": mlflow_flow_body,
        "prefect_s": prefect_s,
        "prefect_parts": prefect_parts,
        "overhead_share": share,
        "prefect_share": prefect_s / wall,
        "overhead_share_without_heartbeat_join": (prefect_s - heartbeat + mlflow_total) / wall,
        "mlflow_share": mlflow_total / wall,
        "goal_share": GOAL,
        "meets_goal": share <= GOAL,
        "mlflow_by_function": _scoped(LEDGER.mlflow_fn, "round"),
        "mlflow_calls": _scoped(LEDGER.mlflow_calls, "round"),
        "mlflow_by_primitive": _scoped(LEDGER.inner, "round"),
    }


def campaign_report(fixed: dict[str, float], campaign_wall: float, drain: float) -> dict[str, Any]:
    """The campaign's fixed costs around the round: server start, model prep, round-0 evaluation, MLflow."""
    prep, heldout, base_eval = (f"campaign/{n}" for n in ("prepare-policy", "prompts", "evaluate"))
    return fixed | {
        "model_prep_s": LEDGER.body[prep],
        "model_prep_task_run_s": LEDGER.call[prep] - LEDGER.body[prep],
        "heldout_prompts_s": LEDGER.call[heldout],
        "round0_evaluate_s": LEDGER.body[base_eval],
        "round0_evaluate_task_run_s": LEDGER.call[base_eval] - LEDGER.body[base_eval],
        "campaign_mlflow_s": sum(v for k, v in LEDGER.mlflow_where.items() if k.startswith("campaign/")),
        "campaign_heartbeat_join_s": LEDGER.heartbeat_join.get(flows.campaign.campaign_flow.name, 0.0),
        "post_campaign_drain_s": drain,
        "campaign_wall_s": campaign_wall,
        "campaign_mlflow_by_function": _scoped(LEDGER.mlflow_fn, "campaign"),
    }


def _scoped(table: dict[str, Any], scope: str) -> dict[str, Any]:
    return {k.split("/", 1)[1]: v for k, v in table.items() if k.startswith(f"{scope}/")}


def print_table(result: dict[str, Any]) -> None:
    """Print the round's breakdown, its MLflow detail and the campaign's fixed costs."""
    rnd, camp = result["round"], result["campaign"]
    wall = rnd["wall_s"]
    print(f"\nRound 1 of configs/tiny.yaml: {wall:.2f} s as the campaign sees the subflow call")
    print(f"{'stage':<10}{'work s':>9}{'mlflow s':>10}{'task run s':>12}{'% round':>9}")
    for name, s in rnd["stages"].items():
        print(f"{name:<10}{s['work_s']:>9.3f}{s['mlflow_s']:>10.3f}{s['task_run_s']:>12.3f}{s['call_s'] / wall:>9.1%}")
    parts = rnd["prefect_parts"]
    print(f"{'MLflow in flow body':<32}{rnd['mlflow_in_flow_body_s']:>8.3f} s")
    print(f"{'MLflow total':<32}{rnd['mlflow_s']:>8.3f} s  {rnd['mlflow_share']:.1%}")
    print(f"{'Prefect total':<32}{rnd['prefect_s']:>8.3f} s  {rnd['prefect_share']:.1%}")
    print(f"{'  subflow heartbeat join':<32}{parts['subflow_heartbeat_join_s']:>8.3f} s")
    print(f"{'  subflow create + finish':<32}{parts['subflow_create_and_finish_s']:>8.3f} s")
    print(f"{'  task runs (call - body)':<32}{parts['task_runs_s']:>8.3f} s")
    print(f"{'  flow-body glue':<32}{parts['flow_body_glue_s']:>8.3f} s")
    verdict = "meets" if rnd["meets_goal"] else "MISSES"
    print(f"Prefect + MLflow share of the round: {rnd['overhead_share']:.1%} ({verdict} the {GOAL:.0%} goal)")
    print(f"  without the heartbeat join: {rnd['overhead_share_without_heartbeat_join']:.1%}")
    print("\nMLflow in the round, by function (calls) and by primitive:")
    for name, secs in sorted(rnd["mlflow_by_function"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<30}{secs:>8.3f} s  ({rnd['mlflow_calls'][name]})")
    for name, secs in sorted(rnd["mlflow_by_primitive"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:<40}{secs:>8.3f} s")
    print("\nCampaign fixed costs (outside the round):")
    for key, value in camp.items():
        if isinstance(value, float):
            print(f"  {key:<32}{value:>8.3f}")
    base = result["baselines"]
    print(f"Baselines: empty task call {base['empty_task_call_s']:.3f} s, ", end="")
    print(f"empty subflow call {base['empty_subflow_call_s']:.3f} s (heartbeat join included)")


def run() -> dict[str, Any]:
    """Warm up, instrument, run the one-round campaign, drain Prefect's queues and gather the figures."""
    set_torch_threads(1)
    config = load_config("tiny", ["rounds=1", f"tracking.output_dir={SCRATCH / 'runs'}"])
    prep_warmup = _seconds(lambda: prepare_base(config))  # builds the tiny model cache if it is missing
    fixed, baselines = fixed_costs()
    fixed["model_prep_warmup_s"] = prep_warmup
    instrument()
    campaign_wall = _seconds(lambda: flows.campaign.campaign_flow(config))
    drain = _seconds(lambda: (EventsWorker.drain_all(at_exit=False), APILogWorker.drain_all(at_exit=False)))
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"python": platform.python_version(), "prefect": prefect.__version__, "mlflow": mlflow.__version__},
        "git_commit": tasks.tracking.git_commit(),
        "round": round_report(),
        "campaign": campaign_report(fixed, campaign_wall, drain),
        "baselines": baselines,
    }


def main() -> None:
    """Run the benchmark, print the table and write the JSON; remove the scratch folder afterwards."""
    try:
        result = run()
        print_table(result)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {RESULTS}")
    finally:
        SubprocessASGIServer().stop()
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
