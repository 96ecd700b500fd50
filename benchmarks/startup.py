"""Measure what a `selftrain run` process spends around its campaign: start-up and exit, before and after overlap.

A small tiny-model campaign (one round, 16 prompts; the tiny model is built once first) runs as a `selftrain`
process in two ways, alternated, in one run of this script:

- **sequential**, as before: Prefect's server module is imported, the temporary server is started and
  waited for, only then is the campaign flow imported (torch, transformers, MLflow); at exit the cyclic
  collector passes over every object left;
- **overlapped**, as `selftrain` now runs (`flows/launch.py`, `flows/interrupt.py`, `flows/cli.py:console`):
  the server is launched first and starts while the process imports Prefect's server module and the flow;
  at exit the objects are frozen (`gc.freeze`) and left to the process's end.

For each process it records the wall time to the flow run's first line, to the campaign's last line, and to the
process's end. The machine is shared and noisy, so the result is a ratio of medians within this one run.
Writes `benchmarks/results/startup.json`.

Run: `.venv/bin/python benchmarks/startup.py [--repeats 3]` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup.json"
CAMPAIGN = [
    "run",
    "configs/tiny.yaml",
    "rounds=1",
    "prompts.train_size=16",
    "prompts.heldout_size=32",
    "prompts.test_size=32",
    "prompts.ood_size=16",
    "generate.k=2",
    "train.epochs=1",
]
# The process as it ran before: server module imported up front (so nothing is launched ahead), no preload,
# `main` without the freeze at exit.
SEQUENTIAL = """
import sys
import prefect.server.api.server
import flows.cli
launch = flows.cli.launch
flows.cli.launch = lambda start, resume=None, preload=(): launch(start, resume)
sys.exit(flows.cli.main(sys.argv[1:]))
"""
OVERLAPPED = """
import sys
import flows.cli
sys.exit(flows.cli.console())
"""
FLOW_STARTED = "Beginning flow run"
FLOW_ENDED = "MLflow campaign run:"


def one_process(code: str, scratch: Path, index: int) -> dict[str, float]:
    """Run the campaign in a fresh output folder; seconds to the flow's start, the table, and the process end."""
    out = scratch / f"run-{index}"
    env = {**os.environ, "PREFECT_HOME": str(scratch / "prefect-home"), "SELFTRAIN_CACHE": str(scratch / "cache")}
    env["OMP_NUM_THREADS"] = "1"
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    args = [sys.executable, "-c", code, *CAMPAIGN, f"tracking.output_dir={out}"]
    started = time.perf_counter()
    marks: dict[str, float] = {}
    with subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            for key, text in (("flow_started", FLOW_STARTED), ("campaign_done", FLOW_ENDED)):
                if text in line and key not in marks:
                    marks[key] = time.perf_counter() - started
    marks["process_end"] = time.perf_counter() - started
    if proc.returncode != 0 or len(marks) != 3:
        raise SystemExit(f"benchmark campaign failed (rc {proc.returncode}, marks {marks})")
    marks["exit"] = marks["process_end"] - marks["campaign_done"]
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per way, alternated")
    ns = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="selftrain-startup-"))
    print("warm-up (builds the tiny model, creates the Prefect home) ...", flush=True)
    one_process(OVERLAPPED, scratch, 0)
    runs: dict[str, list[dict[str, float]]] = {"sequential": [], "overlapped": []}
    for index in range(ns.repeats):
        for way, code in (("sequential", SEQUENTIAL), ("overlapped", OVERLAPPED)):
            marks = one_process(code, scratch, 1 + sum(map(len, runs.values())))
            runs[way].append(marks)
            print(f"{way:10s} #{index + 1}: flow starts {marks['flow_started']:5.1f} s, campaign done "
                  f"{marks['campaign_done']:5.1f} s, exit {marks['exit']:4.1f} s, "
                  f"process {marks['process_end']:5.1f} s", flush=True)  # fmt: skip
    median = {way: {key: statistics.median(m[key] for m in done) for key in done[0]} for way, done in runs.items()}
    ratio = median["sequential"]["process_end"] / median["overlapped"]["process_end"]
    result = {
        "what": "wall seconds of a one-round tiny `selftrain run` process, medians; ratio sequential/overlapped",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "repeats": ns.repeats,
        "median": median,
        "runs": runs,
        "process_ratio": round(ratio, 3),
        "saved_seconds": round(median["sequential"]["process_end"] - median["overlapped"]["process_end"], 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for way in runs:
        m = median[way]
        print(f"median {way:10s}: flow starts {m['flow_started']:5.1f} s, exit {m['exit']:4.1f} s, "
              f"process {m['process_end']:5.1f} s")  # fmt: skip
    print(f"sequential / overlapped: {ratio:.2f}x per process; written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
