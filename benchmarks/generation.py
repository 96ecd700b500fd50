"""Measure generation speed: batched vs one-at-a-time (tiny model), and few-shot prefix KV reuse (Gemma 3 270M).

Two ratios, each measured within this one run with one torch thread (the machine is shared and noisy):

- `batching`: tokens/s of `HFSampler` generating the tiny campaign's sequences (64 prompts x k=4,
  temperature 1.0, up to 24 new tokens, stop "\\n") in batches of 64, against the same sampler with
  batch size 1 on the first sequences (a rate, so fewer sequences suffice). Goal: at least 8x.
- `prefix_reuse`: wall time of `HFSampler.sample` behind `configs/few-shot-start.yaml`'s few-shot prefix
  (its round-1 sampling, which the default ran before its warm start: 3 worked examples from
  `tasks.prompts.few_shot_prefix`, template "Question: {prompt}\\nAnswer:", operands 1..20, k=4, temperature 0.8,
  up to 20 new tokens, stop "\\n") on Gemma 3 270M, with the prefix's KV cache computed once and reused
  (`reuse_prefix_cache=True`) against every row prefilling the prefix. Goal: at least 2x. A few batches only: the
  machine is shared.

- `batch_size` (`--part batch`, not in `all`): the default campaign's decoding on Gemma at batch 32 against
  128 (`--sizes`: two others, kept under `batch_size_A_B`): greedy
  validation answers and k=4 training samples, both behind the few-shot prefix, alternated with `--repeats` 2 or
  more; its entry keeps its own commit, date and threads (`--threads 2`: the default campaign's). Decoding one
  token costs the same weight reads (1.1 GB in fp32, most of it the 262k-token head) for 32 rows as for 128, so
  larger batches raise throughput until compute binds.

Prints a table and writes `benchmarks/results/generation.json` (with the git commit).

Run: `.venv/bin/python benchmarks/generation.py [--part tiny|gemma|batch|all] [--gemma-prompts 16] [--batch-size 32]
[--sizes 32 128]`
(tiny part ~1 min; Gemma part a few minutes on 2 shared cores).
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

from configs.loader import load_config
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root, prepare_base
from tasks.prompts import campaign_prompts, few_shot_prefix
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "generation.json"


def _timed_sample(sampler: HFSampler, prompts: list[str], **kwargs: Any) -> tuple[list[list[str]], dict[str, float]]:
    """Responses of one `sample` call, with its wall seconds, CPU seconds (this process) and new tokens."""
    before = sampler.tokens_generated
    wall, cpu = time.perf_counter(), time.process_time()
    out = sampler.sample(prompts, **kwargs)
    cost = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    return out, cost | {"tokens": sampler.tokens_generated - before}


def bench_batching(one_at_a_time_prompts: int) -> dict[str, Any]:
    """Tokens/s with the tiny campaign's batch size (64) against batch size 1 on the tiny model."""
    config = load_config("tiny")
    model, tokenizer = load_policy(prepare_base(config).base)
    gen = config.generate
    prompts = [config.prompts.template.format(prompt=r["prompt"]) for r in campaign_prompts(config, "train", 1)][:64]
    args = dict(n=4, temperature=gen.temperature, top_p=gen.top_p, max_new_tokens=gen.max_new_tokens, stop=gen.stop)
    sampler = HFSampler(model, tokenizer)
    _timed_sample(sampler, prompts[:4], seed=1, batch_size=4, **args)  # warm-up (first-call allocations)
    _, batched = _timed_sample(sampler, prompts, seed=0, batch_size=64, **args)
    subset = prompts[:one_at_a_time_prompts]
    _, single = _timed_sample(sampler, subset, seed=0, batch_size=1, **args)
    return {
        "model": "tiny (configs/tiny.yaml)",
        "sequences_batched": len(prompts) * 4,
        "batch_size": 64,
        "batched": batched,
        "batched_tokens_per_s": batched["tokens"] / batched["wall"],
        "sequences_one_at_a_time": len(subset) * 4,
        "one_at_a_time": single,
        "one_at_a_time_tokens_per_s": single["tokens"] / single["wall"],
        "ratio": (batched["tokens"] / batched["wall"]) / (single["tokens"] / single["wall"]),
        "ratio_cpu_time": (batched["tokens"] / batched["cpu"]) / (single["tokens"] / single["cpu"]),
        "goal": ">= 8",
    }


def bench_prefix_reuse(n_prompts: int, batch_size: int) -> dict[str, Any]:
    """Wall time of sampling behind few-shot-start's prefix on Gemma 3 270M, with and without reuse."""
    config = load_config("few-shot-start")  # the default samples nothing behind a prefix since its warm start
    model, tokenizer = load_policy(str(ensure_packaged_gemma(cache_root() / "models")))
    gen = config.generate
    prefix = few_shot_prefix(config)
    records = campaign_prompts(config, "train", 1)[:n_prompts]
    prompts = [config.prompts.template.format(prompt=r["prompt"]) for r in records]
    args = dict(n=gen.k, temperature=gen.temperature, top_p=gen.top_p, max_new_tokens=gen.max_new_tokens, stop=gen.stop)
    args |= {"batch_size": batch_size, "prefix": prefix}
    reuse, plain = HFSampler(model, tokenizer), HFSampler(model, tokenizer, reuse_prefix_cache=False)
    _timed_sample(reuse, prompts[:1], **(args | {"n": 1, "max_new_tokens": 2, "seed": 0}))  # warm-up
    # One batch per call, the two modes alternating (ABBA) so that load from other processes on this
    # shared machine falls on both alike. Each reuse call computes the prefix cache again (a campaign
    # computes it once per stage), so the ratio is, if anything, understated.
    per_call = max(batch_size // gen.k, 1)
    totals = {mode: {"wall": 0.0, "cpu": 0.0, "tokens": 0} for mode in ("reuse", "no_reuse")}
    identical = sequences = 0
    for index, start in enumerate(range(0, len(prompts), per_call)):
        chunk = prompts[start : start + per_call]
        order = ("reuse", "no_reuse") if index % 2 == 0 else ("no_reuse", "reuse")
        outputs = {}
        for mode in order:
            sampler = reuse if mode == "reuse" else plain
            outputs[mode], cost = _timed_sample(sampler, chunk, **(args | {"seed": index}))
            totals[mode] = {key: totals[mode][key] + cost[key] for key in cost}
            print(f"  batch {index} {mode}: {cost['wall']:.1f} s wall, {cost['cpu']:.1f} s cpu", flush=True)
        for row_a, row_b in zip(outputs["reuse"], outputs["no_reuse"], strict=True):
            identical += sum(a == b for a, b in zip(row_a, row_b, strict=True))
            sequences += len(row_a)
    prompt_tokens = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    return {
        "model": "Gemma 3 270M (packaged GGUF, fp32)",
        "prefix_tokens": len(tokenizer(prefix)["input_ids"]),
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
        "sequences": sequences,
        "batch_size": batch_size,
        "temperature": gen.temperature,
        "max_new_tokens": gen.max_new_tokens,
        "reuse": totals["reuse"],
        "no_reuse": totals["no_reuse"],
        "identical_responses": identical,
        "ratio": totals["no_reuse"]["wall"] / totals["reuse"]["wall"],
        "ratio_cpu_time": totals["no_reuse"]["cpu"] / totals["reuse"]["cpu"],
        "goal": ">= 2",
    }


def bench_batch_size(sizes: tuple[int, int], repeats: int) -> dict[str, Any]:
    """Wall time of the default campaign's two kinds of decoding on Gemma 3 270M at two batch sizes: greedy
    answers to its 200 validation questions, and k=4 samples of 64 training questions at temperature 0.8,
    both behind its few-shot prefix (the base then answers in the worked form, as long as a trained policy's
    answers). The sizes alternate (ABAB) `repeats` times; the responses at both sizes are compared."""
    config = load_config("default")
    model, tokenizer = load_policy(str(ensure_packaged_gemma(cache_root() / "models")))
    gen, template = config.generate, config.prompts.template
    prefix = few_shot_prefix(config)
    jobs = {
        "greedy_validation": (
            [template.format(prompt=r["prompt"]) for r in campaign_prompts(config, "validation", 0)],
            dict(n=1, temperature=0.0),
        ),
        "sampled_train": (
            [template.format(prompt=r["prompt"]) for r in campaign_prompts(config, "train", 1)][:64],
            dict(n=gen.k, temperature=gen.temperature),
        ),
    }
    sampler = HFSampler(model, tokenizer)
    _timed_sample(
        sampler,
        jobs["greedy_validation"][0][:2],
        n=1,
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=2,
        stop=gen.stop,
        seed=0,
        batch_size=2,
        prefix=prefix,
    )  # warm-up
    out: dict[str, Any] = {"model": "Gemma 3 270M (packaged GGUF, fp32)", "sizes": list(sizes), "repeats": repeats}
    out |= {"commit": git_commit(), "date": datetime.date.today().isoformat(), "torch_threads": torch.get_num_threads()}
    for name, (prompts, kind) in jobs.items():
        walls: dict[int, float] = dict.fromkeys(sizes, 0.0)
        responses: dict[int, list[list[str]]] = {}
        for repeat in range(repeats):
            for size in sizes if repeat % 2 == 0 else sizes[::-1]:
                args = kind | dict(top_p=1.0, max_new_tokens=gen.max_new_tokens, stop=gen.stop, seed=0)
                responses[size], cost = _timed_sample(sampler, prompts, batch_size=size, prefix=prefix, **args)
                walls[size] += cost["wall"]
                print(f"  {name} batch {size}: {cost['wall']:.1f} s wall", flush=True)
        small, large = sizes
        differ = sum(
            a != b for x, y in zip(responses[small], responses[large], strict=True) for a, b in zip(x, y, strict=True)
        )
        out[name] = {
            "sequences": len(prompts) * kind["n"],
            "wall": {str(size): walls[size] for size in sizes},
            "ratio": walls[small] / walls[large],
            "responses_differing": differ,
        }
    return out


def print_batch_size(figures: dict[str, Any]) -> None:
    """The `batch_size` part's table: wall time per batch size, the ratio and differing responses per job."""
    for name in ("greedy_validation", "sampled_train"):
        b = figures[name]
        walls = ", ".join(f"batch {size}: {wall:.1f} s" for size, wall in b["wall"].items())
        print(f"\n{name} ({b['sequences']} seq, Gemma, behind the few-shot prefix): {walls}")
        print(f"  ratio {b['ratio']:.2f}x wall; responses differing {b['responses_differing']}")


def main() -> int:
    """Run the chosen parts, print a table, merge the figures into the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["tiny", "gemma", "batch", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=2, help="batch: ABAB repeats of each batch size")
    parser.add_argument("--one-at-a-time-prompts", type=int, default=16, help="tiny: prompts (x4) at batch size 1")
    parser.add_argument("--gemma-prompts", type=int, default=16, help="Gemma: prompts (x k=4 sequences)")
    parser.add_argument("--batch-size", type=int, default=32, help="Gemma: sequences per batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs=2, default=[32, 128], help="batch: the two batch sizes")
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if ns.part == "batch":  # its own commit, date and threads: the other parts' figures keep theirs
        small, large = ns.sizes
        key = "batch_size" if (small, large) == (32, 128) else f"batch_size_{small}_{large}"
        results[key] = bench_batch_size((small, large), ns.repeats)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print_batch_size(results[key])
        return 0
    results |= {
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
    }
    if ns.part in ("tiny", "all"):
        results["batching"] = bench_batching(ns.one_at_a_time_prompts)
    if ns.part in ("gemma", "all"):
        results["prefix_reuse"] = bench_prefix_reuse(ns.gemma_prompts, ns.batch_size)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"commit {results['commit']}, {results['date']}, {results['torch_threads']} torch thread(s)")
    if "batching" in results:
        b = results["batching"]
        print("\nbatched vs one-at-a-time (tiny model)")
        print(f"  batch 64:  {b['sequences_batched']:4d} seq  {b['batched_tokens_per_s']:9.1f} tok/s")
        print(f"  batch 1:   {b['sequences_one_at_a_time']:4d} seq  {b['one_at_a_time_tokens_per_s']:9.1f} tok/s")
        print(f"  ratio {b['ratio']:.1f}x wall, {b['ratio_cpu_time']:.1f}x CPU time (goal {b['goal']})")
    if "prefix_reuse" in results:
        p = results["prefix_reuse"]
        print(f"\nfew-shot prefix KV reuse (Gemma 3 270M, prefix {p['prefix_tokens']} tokens, batch {p['batch_size']})")
        for mode in ("reuse", "no_reuse"):
            c = p[mode]
            print(f"  {mode:9s} {p['sequences']} seq {c['wall']:7.1f} s wall {c['cpu']:7.1f} s cpu {c['tokens']} new")
        print(f"  ratio {p['ratio']:.2f}x wall, {p['ratio_cpu_time']:.2f}x CPU time (goal {p['goal']})")
        print(f"  identical responses {p['identical_responses']}/{p['sequences']}")
    if "batch_size" in results:
        print_batch_size(results["batch_size"])
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
