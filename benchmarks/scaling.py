"""Measure sharded generation: 2 Ray workers x 1 thread against 1 process x 1 thread, tiny model and Gemma 3 270M.

Both sides run the same step, `tasks.generate.generate_responses` on the same prompts with the same seed (the
`gemma-resampling` part: `tasks.evaluate.resample_working`, the samples `evaluate.resample_failed_working` draws
for answers whose working failed, at the default's settings):

- `one_process`: in this process with one torch thread, loading the policy first (as a step does);
- `two_workers`: `tasks.sharding.map_shards` with 2 shards on a local Ray cluster on loopback (2 CPUs),
  each shard a Prefect task on a Ray worker with one torch thread that loads the policy and samples half
  the prompts, the whole inside one Prefect flow (the temporary server, as the embedded mode).

A warm-up call of each side runs first (Ray worker start-up, imports, file caches), then the two sides
alternate `--repeats` times (ABBA) so load from other processes falls on both alike. Reported per model:
wall seconds of each side, new tokens, the ratio of throughputs (goal: at least 1.6x) and whether both sides
gave identical samples (they must: samples are seeded per prompt and a shard gets whole batches of the
unsharded run, `tasks.sharding.shard_plan`), with the count of samples that differ. The machine's load
(`uptime`) is recorded before and after, since it is shared.

Writes `benchmarks/results/scaling.json` and `scaling.md`; each part keeps its run (git commit, date, machine, load),
so a part run alone replaces only its own line.

Run: `.venv/bin/python benchmarks/scaling.py [--part tiny|gemma|gemma-resampling|all] [--repeats 2]`
(a few minutes on 2 quiet cores; uses $SELFTRAIN_CACHE, reading the converted Gemma, never writing it).
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray
from prefect import flow

from configs.loader import load_config
from configs.schema import GenerateConfig, ScaleConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root, prepare_base
from tasks.evaluate import resample_working
from tasks.generate import generate_responses
from tasks.judging.verifier import shows_work
from tasks.prompts import campaign_prompts
from tasks.records import ModelRef, Record
from tasks.sharding import map_shards
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
REPORT = RESULTS.with_suffix(".md")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _one_process(policy: ModelRef, rows: list[Record], step: Any) -> tuple[list[Record], float]:
    started = time.perf_counter()
    model, tokenizer = load_policy(policy.base, policy.adapter)
    out = step(HFSampler(model, tokenizer), rows)
    return out, time.perf_counter() - started


@flow(name="scaling-benchmark")
def _two_workers(policy: ModelRef, rows: list[Record], step: Any) -> tuple[list[Record], float]:
    started = time.perf_counter()
    out = map_shards(policy, rows, step, shards=2, field="generate.shards", scale=ScaleConfig(), threads=1)
    return out, time.perf_counter() - started


def bench(
    name: str, policy: ModelRef, rows: list[Record], step: Any, *, per_batch: int, k: int, tokens: int, repeats: int
) -> dict:
    """Both sides run `step` (`k` samples of up to `tokens` new tokens per row) on `rows`, a warm-up each (two
    batches of `per_batch` rows), then `repeats` alternating pairs."""
    warm = rows[: 2 * per_batch]  # two batches: each Ray worker gets one (`tasks.sharding.shard_plan`)
    _one_process(policy, warm, step)
    _two_workers(policy, warm, step)
    walls: dict[str, list[float]] = {"one_process": [], "two_workers": []}
    outputs: dict[str, list[Record]] = {}
    for index in range(repeats):
        order = ("one_process", "two_workers") if index % 2 == 0 else ("two_workers", "one_process")
        for side in order:
            run = _one_process if side == "one_process" else _two_workers
            outputs[side], wall = run(policy, rows, step)
            walls[side].append(wall)
            print(f"  {name} {side}: {wall:.1f} s", flush=True)
    one, two = sum(walls["one_process"]), sum(walls["two_workers"])
    return {
        "model": name,
        "prompts": len(rows),
        "k": k,
        "max_new_tokens": tokens,
        "sequences": len(outputs["one_process"]),
        "chars_generated": sum(len(r["response"]) for r in outputs["one_process"]),
        "one_process_seconds": walls["one_process"],
        "two_workers_seconds": walls["two_workers"],
        "ratio": one / two,
        "identical_samples": outputs["one_process"] == outputs["two_workers"],
        "differing_samples": sum(a != b for a, b in zip(outputs["one_process"], outputs["two_workers"], strict=True)),
        "goal": ">= 1.6",
    }


def generation(
    name: str, policy: ModelRef, rows: list[Record], cfg: GenerateConfig, template: str, repeats: int
) -> dict:
    """`bench` of `generate_responses` at `cfg`."""
    step = partial(generate_responses, cfg=cfg, template=template, seed=0)
    per_batch, tokens = cfg.batch_size // cfg.k, cfg.max_new_tokens
    return bench(name, policy, rows, step, per_batch=per_batch, k=cfg.k, tokens=tokens, repeats=repeats)


def resampling(evaluated: Path, repeats: int) -> dict:
    """`bench` of `resample_working` at the default campaign's settings on a campaign's own load: the rows of
    `evaluated` (a round's `*evaluated.jsonl` under `evaluate.resample_failed_working`) whose greedy working
    failed, sampled from the policy of that round (its `adapter/` beside the file) on the packaged Gemma."""
    config = load_config("default")
    base = ensure_packaged_gemma(cache_root() / "models")  # converted once, then only read
    policy = ModelRef(source="packaged-gemma", base=str(base), adapter=str(evaluated.parent / "adapter"))
    rows = [json.loads(line) for line in evaluated.read_text().splitlines() if line.strip()]
    failed = [
        {"id": row["id"], "prompt": row["prompt"], "response": row["greedy_response"]}
        for row in rows
        if not shows_work(row["greedy_response"], config.judge.answer_pattern)
    ]
    k = 4
    step = partial(
        resample_working,
        k=k,
        temperature=config.generate.temperature,
        top_p=config.generate.top_p,
        seed=config.seed,
        template=config.prompts.template,
        max_new_tokens=config.evaluate.max_new_tokens,
        stop=config.generate.stop,
        batch_size=config.generate.batch_size,
        answer_pattern=config.judge.answer_pattern,
    )
    per_batch, tokens = config.generate.batch_size // k, config.evaluate.max_new_tokens
    result = bench(
        "Gemma 3 270M, resampling", policy, failed, step, per_batch=per_batch, k=k, tokens=tokens, repeats=repeats
    )
    return result | {"evaluated": str(evaluated), "sequences": len(failed) * k, "rows": len(failed)}


def report(results: dict[str, Any]) -> str:
    """`scaling.md`: a line per part, each with its run."""
    lines = [
        "# Sharded generation: 2 Ray workers x 1 thread vs 1 process x 1 thread",
        "",
        "| model | prompts x k | 1 process (s) | 2 workers (s) | ratio | goal | identical samples | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs: list[dict] = []
    for key in ("tiny", "gemma", "gemma_resampling"):
        if key in results:
            r = results[key]
            runs += [] if r["run"] in runs else [r["run"]]
            one = " + ".join(f"{s:.1f}" for s in r["one_process_seconds"])
            two = " + ".join(f"{s:.1f}" for s in r["two_workers_seconds"])
            row = f"| {r['model']} | {r['prompts']} x {r['k']} | {one} | {two} | {r['ratio']:.2f}x | {r['goal']} |"
            differ, of = r.get("differing_samples", "?"), r.get("rows", r["sequences"])  # resampling: answers kept
            lines.append(f"{row} {r['identical_samples']} ({differ} of {of} differ) | {runs.index(r['run']) + 1} |")
    lines.append("")
    for index, run in enumerate(runs, start=1):
        lines.append(f"Run {index}: commit {run['commit'][:7]}, {run['date']}, {run['machine']}; load before")
        lines.append(f"`{run['load_before']}`, after `{run['load_after']}`.")
    if "gemma_resampling" in results:
        r = results["gemma_resampling"]
        lines += [
            "",
            f"Resampling: the {r['rows']} answers of `{r['evaluated']}` whose greedy working failed, {r['k']} samples "
            f"each at the default's settings ({r['max_new_tokens']} new tokens, batches of 128 sequences), from that "
            "round's policy (`tasks.evaluate.resample_working`, the step `evaluate.resample_failed_working` shards); "
            "'identical' compares the answers kept.",
        ]
    lines += ["", f"Pool vs embedded round: {results['pool_vs_embedded']}.", ""]
    return "\n".join(lines)


def main() -> int:
    """Run the chosen parts, write JSON and Markdown, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["tiny", "gemma", "gemma-resampling", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny-prompts", type=int, default=64)
    parser.add_argument("--gemma-prompts", type=int, default=64)
    parser.add_argument(
        "--evaluated",
        type=Path,
        help="gemma-resampling: a round's *evaluated.jsonl under evaluate.resample_failed_working, adapter/ beside",
    )
    ns = parser.parse_args()
    set_torch_threads(1)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    run = {
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": _uptime(),
    }
    parts: dict[str, dict] = {}
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    config = load_config("tiny")
    template = config.prompts.template
    train = campaign_prompts(config, "train", 1)
    if ns.part in ("tiny", "all"):
        policy = ModelRef(source="tiny", base=prepare_base(config).base)
        cfg = config.generate.model_copy(update={"k": 4})
        parts["tiny"] = generation("tiny", policy, train[: ns.tiny_prompts], cfg, template, ns.repeats)
    if ns.part in ("gemma", "all"):
        base = ensure_packaged_gemma(cache_root() / "models")  # converted once, then only read
        policy = ModelRef(source="packaged-gemma", base=str(base))
        cfg = GenerateConfig(k=2, temperature=0.8, max_new_tokens=16, batch_size=16)
        parts["gemma"] = generation("Gemma 3 270M", policy, train[: ns.gemma_prompts], cfg, template, ns.repeats)
    if ns.part == "gemma-resampling" or (ns.part == "all" and ns.evaluated):
        if not ns.evaluated:
            parser.error("--part gemma-resampling needs --evaluated")
        parts["gemma_resampling"] = resampling(ns.evaluated, ns.repeats)
    ray.shutdown()
    run["load_after"] = _uptime()
    results |= {key: part | {"run": run} for key, part in parts.items()}  # a part run before keeps its own run
    results["pool_vs_embedded"] = (
        "measured by benchmarks/pool_round.py, in benchmarks/results/scaling_pool.md (a tiny campaign embedded, "
        "on the server stack in-process and on the process work pool)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    REPORT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
