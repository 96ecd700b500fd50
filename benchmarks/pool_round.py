"""Time one tiny campaign three ways: embedded, in-process on the server stack, and on the process work pool.

The same small campaign (`configs/tiny.yaml`, 2 rounds, 64 prompts a split, 1 epoch) runs as a user starts it:

- `embedded`: `selftrain run` with no PREFECT_API_URL or MLFLOW_TRACKING_URI: Prefect's temporary server
  (its home warmed once before timing, as a user's `~/.prefect` is) and MLflow in a SQLite file;
- `stack`: `selftrain run` with PREFECT_API_URL and MLFLOW_TRACKING_URI pointing at the stack that
  `infra/start-stack.sh` starts (PostgreSQL, `prefect server`, `mlflow server`): the flow runs in this
  process, its state and runs go to the servers (README, "Seeing runs");
- `pool`: `selftrain submit pool ... --watch` against the deployment `infra/prefect.yaml` makes
  (`prefect deploy`, the work pool `selftrain-pool`), taken by one `prefect worker start` that runs the
  flow run as a process of its own; timed from the command's start to its exit, as a user sees it.

Each side gets its own output folder and MLflow experiment per run (never a resume). The sides alternate
(A B C, then C B A, ...) so load from other processes falls on all alike. Reported per side: wall seconds
of the command, the MLflow campaign run's span, each round run's span (start to end, as MLflow recorded
them), and for the pool the wait from submission to the flow run's Running state (worker poll, process
start, imports); ratios pool/embedded and stack/embedded. `uptime` before and after, and the git commit.

Writes `benchmarks/results/scaling_pool.json` and `scaling_pool.md`. Everything else (stack state, Prefect
homes, campaign folders, the tiny model cache unless SELFTRAIN_CACHE is set) lives under `--scratch`; the
worker and the stack are stopped at the end, also on failure.

Run: `.venv/bin/python benchmarks/pool_round.py [--scratch DIR] [--repeats 2] [--note LINE ...]`
(15-30 min on 2 loaded cores; needs PostgreSQL, as the integration tests do); `--render --note LINE ...`
rewrites only the Markdown from the JSON, with new notes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "scaling_pool.json"
REPORT = RESULTS.with_suffix(".md")
POOL, DEPLOYMENT = "selftrain-pool", "pool"
SIDES = ("embedded", "stack", "pool")
SMALL = [  # tests/integration/test_work_pool.py's campaign
    "name=pool-bench",
    "prompts.train_size=64",
    "prompts.validation_size=64",
    "prompts.test_size=64",
    "prompts.ood_size=32",
    "train.epochs=1",
]
sys.path.insert(0, str(ROOT))


def uptime() -> str:
    """The `uptime` line: the machine is shared, so its load goes beside every figure."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(scratch: Path) -> dict[str, str]:
    """This process's environment without tracking or Prefect URLs, offline, one thread, a private model cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",  # the default 20 s is too short on loaded cores
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        SELFTRAIN_CACHE=os.environ.get("SELFTRAIN_CACHE", str(scratch / "cache")),
    )
    return env


def run_checked(command: list[str], env: dict[str, str], what: str, timeout: float = 600) -> float:
    """Run `command` in the repository; return its wall seconds, or raise naming `what` with the output's tail."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


@contextlib.contextmanager
def server_stack(state: Path, env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """`infra/start-stack.sh start STATE` on free loopback ports; yields its URLs and start seconds; stops it."""
    env = {**env, "PG_PORT": str(free_port()), "PREFECT_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    script = ["bash", str(ROOT / "infra" / "start-stack.sh")]
    try:
        seconds = run_checked([*script, "start", str(state)], {**env, "VENV": str(BIN.parent)}, "start-stack.sh")
        values = {}
        for line in (state / "env.sh").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                values[key] = value
        yield {"prefect_api": values["PREFECT_API_URL"], "mlflow": values["MLFLOW_TRACKING_URI"], "start_s": seconds}
    finally:
        subprocess.run([*script, "stop", str(state)], env=env, capture_output=True, timeout=120)
        pgdata = state / "pgdata.path"
        if pgdata.exists() and (folder := Path(pgdata.read_text().strip()).parent).name.startswith("selftrain-pg."):
            shutil.rmtree(folder, ignore_errors=True)  # the root-only-temp fallback outside `state`


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """One `prefect worker start --pool selftrain-pool` in its own session; killed (with its runs) at the end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name", "bench-worker"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_worker(api_url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> float:
    """Seconds until the pool lists an online worker (fails if the worker exits or never shows)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.perf_counter()
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while not [w for w in client.read_workers_for_work_pool(POOL) if str(w.status).endswith("ONLINE")]:
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                raise RuntimeError(f"prefect worker not online (rc {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(1)
    return time.perf_counter() - started


def create_pool(api_url: str) -> None:
    """`prefect work-pool create selftrain-pool --type process`, through the client (the CLI starts slowly)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))


def mlflow_spans(tracking_uri: str, experiment: str) -> dict[str, Any]:
    """The campaign run's span and each round run's span (seconds, from MLflow's start and end times)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RuntimeError(f"experiment {experiment}: not in {tracking_uri}")
    runs = client.search_runs([found.experiment_id])
    spans = {r.data.tags.get("selftrain.kind", "?") + r.data.tags.get("selftrain.round", ""): r for r in runs}
    if any(r.info.status != "FINISHED" or r.info.end_time is None for r in runs):
        raise RuntimeError(f"experiment {experiment}: a run is not FINISHED: {[r.info.status for r in runs]}")
    campaign = [r for r in runs if r.data.tags.get("selftrain.kind") == "campaign"]
    rounds = sorted(
        (r for r in runs if "selftrain.round" in r.data.tags), key=lambda r: int(r.data.tags["selftrain.round"])
    )
    if len(campaign) != 1 or not rounds:
        raise RuntimeError(
            f"experiment {experiment}: expected one campaign run and its round runs, got {sorted(spans)}"
        )
    span = [(r.info.end_time - r.info.start_time) / 1000 for r in (*campaign, *rounds)]
    return {"campaign_run_s": span[0], "round_s": span[1:]}


def pool_timing(api_url: str, output: str) -> dict[str, float]:
    """For the flow run `selftrain submit` printed: submission to Running, and Running to its end (Prefect's times)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    match = re.search(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", output)
    if match is None:
        raise RuntimeError(f"no flow-run id in the output of selftrain submit:\n{output[-2000:]}")
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        run = client.read_flow_run(match.group(1))  # type: ignore[arg-type]
    if run.start_time is None or run.end_time is None or run.created is None:
        raise RuntimeError(f"flow run {run.id}: no start or end time ({run.state_name})")
    return {
        "submitted_to_running_s": (run.start_time - run.created).total_seconds(),
        "running_to_end_s": (run.end_time - run.start_time).total_seconds(),
    }


def one_run(
    side: str, index: int, scratch: Path, envs: dict[str, dict[str, str]], stack: dict, overrides: list[str]
) -> dict[str, Any]:
    """Run the campaign once on `side` (the pool's deployment already holds `overrides`); return the command's
    wall seconds and what MLflow and Prefect recorded."""
    tag = f"{side}-{index}"
    place = [f"tracking.output_dir={scratch / 'runs' / tag}", f"tracking.experiment=pool-bench-{tag}"]
    if side == "pool":
        command = [str(BIN / "selftrain"), "submit", DEPLOYMENT, *place, "--watch"]
    else:
        command = [str(BIN / "selftrain"), "run", "configs/tiny.yaml", *overrides, *place, "--fresh"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=envs[side], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    (scratch / f"{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{tag}: rc {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    uri = f"sqlite:///{scratch / 'runs' / tag / 'mlflow.db'}" if side == "embedded" else stack["mlflow"]
    row = {"side": side, "wall_s": wall, **mlflow_spans(uri, f"pool-bench-{tag}")}
    if side == "pool":
        row |= pool_timing(stack["prefect_api"], proc.stdout)
    print(f"  {tag}: {wall:.1f} s wall, rounds {' + '.join(f'{s:.1f}' for s in row['round_s'])} s", flush=True)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side: the walls, campaign spans and round spans with their means; ratios against embedded."""
    sides: dict[str, Any] = {}
    for side in SIDES:
        mine = [r for r in rows if r["side"] == side]
        rounds = [s for r in mine for s in r["round_s"]]
        sides[side] = {
            "wall_s": [r["wall_s"] for r in mine],
            "campaign_run_s": [r["campaign_run_s"] for r in mine],
            "round_s": [r["round_s"] for r in mine],
            "mean_wall_s": statistics.mean(r["wall_s"] for r in mine),
            "mean_campaign_run_s": statistics.mean(r["campaign_run_s"] for r in mine),
            "mean_round_s": statistics.mean(rounds),
        }
        if side == "pool":
            for key in ("submitted_to_running_s", "running_to_end_s"):
                sides[side][key] = [r[key] for r in mine]
    ratios = {
        f"{side}_over_embedded": {
            what: sides[side][f"mean_{what}_s"] / sides["embedded"][f"mean_{what}_s"]
            for what in ("wall", "campaign_run", "round")
        }
        for side in ("pool", "stack")
    }
    return {"sides": sides, "ratios": ratios}


def render(result: dict[str, Any]) -> str:
    """The Markdown report."""
    sides, ratios = result["sides"], result["ratios"]

    def seconds(values: list) -> str:
        return " / ".join(" + ".join(f"{v:.1f}" for v in x) if isinstance(x, list) else f"{x:.1f}" for x in values)

    lines = [
        "# A round on the process work pool vs the embedded mode",
        "",
        f"commit {result['commit']}, {result['date']}, {result['machine']}; Prefect {result['prefect']},"
        f" MLflow {result['mlflow']}",
        f"load before: `{result['load_before']}`",
        f"load after: `{result['load_after']}`",
        "",
        f"Campaign: `configs/tiny.yaml` {' '.join(result['overrides'])}, rounds={result['rounds']}, one torch thread;"
        f" {result['repeats']} runs a side, alternating ({', '.join(result['order'])}). Stack up in"
        f" {result['stack_start_s']:.0f} s, `prefect deploy` {result['deploy_s']:.0f} s, worker online"
        f" {result['worker_online_s']:.0f} s (polls every {result['worker_poll_s']} s, Prefect's default).",
        "",
        "| side | command wall (s) | MLflow campaign run (s) | rounds (s) | mean wall | mean round |",
        "|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        s = sides[side]
        lines.append(
            f"| {side} | {seconds(s['wall_s'])} | {seconds(s['campaign_run_s'])} | {seconds(s['round_s'])} |"
            f" {s['mean_wall_s']:.1f} | {s['mean_round_s']:.1f} |"
        )
    pool = sides["pool"]
    lines += [
        "",
        f"Pool, submission to the flow run's Running state (worker poll, process start, imports):"
        f" {seconds(pool['submitted_to_running_s'])} s; Running to end: {seconds(pool['running_to_end_s'])} s.",
        "",
        "| ratio of means | command wall | MLflow campaign run | round |",
        "|---|---|---|---|",
        *[
            f"| {key.replace('_over_', ' / ')} | {r['wall']:.2f}x | {r['campaign_run']:.2f}x | {r['round']:.2f}x |"
            for key, r in ratios.items()
        ],
        "",
        *result["notes"],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Start the stack, deploy, start a worker, time the sides alternately, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=None, help="private folder (default: a new temp folder)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--note", action="append", default=[], help="a line added to the Markdown report")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON (new notes)")
    ns = parser.parse_args()
    if ns.render:
        result = json.loads(RESULTS.read_text()) | ({"notes": ns.note} if ns.note else {})
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        REPORT.write_text(render(result))
        print(render(result))
        return 0
    scratch = (ns.scratch or Path(tempfile.mkdtemp(prefix="selftrain-pool-bench-"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(scratch / "driver-home")  # this process's Prefect client, before import
    overrides = [*SMALL, f"rounds={ns.rounds}"]
    env = base_env(scratch)
    load_before = uptime()
    prep = [str(sys.executable), "-c", "from configs.loader import load_config; from tasks.base_model import "
            "prepare_base; prepare_base(load_config('tiny'))"]  # fmt: skip
    run_checked(prep, env, "building the tiny model")  # outside every timed run
    home = {"PREFECT_HOME": str(scratch / "embedded-home")}
    warm = [str(sys.executable), "-c", "from prefect.server.api.server import SubprocessASGIServer as S; "
            "s = S(); s.start(); s.stop()"]  # fmt: skip
    run_checked(warm, {**env, **home}, "warming the embedded Prefect home")  # its database made once, as ~/.prefect
    with server_stack(scratch / "stack", env) as stack:
        on_stack = {**env, "PREFECT_API_URL": stack["prefect_api"], "MLFLOW_TRACKING_URI": stack["mlflow"]}
        create_pool(stack["prefect_api"])
        from configs.loader import load_config

        config = load_config("tiny", overrides).model_dump(mode="json")
        deploy = [str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--all",
                  "--params", json.dumps({"config": config})]  # fmt: skip
        deploy_s = run_checked(
            deploy, {**on_stack, "PWD": str(ROOT), "PREFECT_HOME": str(scratch / "deployer")}, "deploy"
        )
        envs = {
            "embedded": {**env, **home},
            "stack": {**on_stack, "PREFECT_HOME": str(scratch / "stack-home")},
            "pool": {**on_stack, "PREFECT_HOME": str(scratch / "submit-home")},
        }
        worker_env = {**on_stack, "PREFECT_HOME": str(scratch / "worker-home")}
        log = scratch / "worker.log"
        with worker(worker_env, log) as proc:
            online_s = wait_for_worker(stack["prefect_api"], proc, log)
            rows, order = [], []
            for index in range(ns.repeats):
                for side in SIDES if index % 2 == 0 else tuple(reversed(SIDES)):
                    rows.append(one_run(side, index + 1, scratch, envs, stack, overrides))
                    order.append(side)
    from mlflow import __version__ as mlflow_version
    from prefect import __version__ as prefect_version

    from tasks.tracking import git_commit

    result = {
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "prefect": prefect_version,
        "mlflow": mlflow_version,
        "load_before": load_before,
        "load_after": uptime(),
        "overrides": SMALL,
        "rounds": ns.rounds,
        "repeats": ns.repeats,
        "order": order,
        "stack_start_s": stack["start_s"],
        "deploy_s": deploy_s,
        "worker_online_s": online_s,
        "worker_poll_s": int(worker_env.get("PREFECT_WORKER_QUERY_SECONDS", "10")),
        "runs": rows,
        **summarize(rows),
        "notes": ns.note,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    REPORT.write_text(render(result))
    print(render(result))
    print(f"wrote {RESULTS} and {REPORT}; scratch folder {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
