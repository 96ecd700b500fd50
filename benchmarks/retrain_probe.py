"""Retrain one round's ReST-EM adapter offline with other training settings, and score it on validation.

A finished campaign folder holds each round's accumulated verified rows (`round-NN/accumulated.jsonl`) and
its validation set. This script trains a fresh LoRA on the base model from those rows (as a `train.init: base`
round does) with the default config plus overrides and a seed, then answers the validation questions
greedily and prints the strict accuracy with its 95% interval. Validation only: test stays untouched, so
the settings it picks can still be reported on test by a campaign.

    .venv/bin/python benchmarks/retrain_probe.py RUNS/CAMPAIGN round-02 NAME --seed 2 train.learning_rate=0.00025

Appends one JSON line per probe to `benchmarks/results/retrain_probe.jsonl`.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import append_line
from configs.loader import load_config
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.evaluate import evaluate_greedy
from tasks.records import read_records
from tasks.select import to_sft_examples
from tasks.tracking import git_commit
from tasks.train_sft import train_sft

RESULTS = ROOT / "benchmarks" / "results" / "retrain_probe.jsonl"


def main() -> int:
    """Train, score, append the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path, help="a finished campaign's folder (runs/<name>-<time>-<id>)")
    parser.add_argument("round", help="the round folder whose accumulated rows to train on, e.g. round-02")
    parser.add_argument("name", help="a label for this probe")
    parser.add_argument("overrides", nargs="*", help="config overrides on configs/default.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    config = load_config("default", ns.overrides)
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    rows = read_records(ns.campaign / ns.round / "accumulated.jsonl")
    examples = to_sft_examples(rows, config.prompts.template)
    with tempfile.TemporaryDirectory() as scratch:
        trained = train_sft(base, None, examples, config.train, Path(scratch) / "adapter", seed=ns.seed)
        model, tokenizer = load_policy(base, str(Path(scratch) / "adapter"))
        started = time.perf_counter()
        _, metrics = evaluate_greedy(
            HFSampler(model, tokenizer),
            read_records(ns.campaign / "validation.jsonl"),
            template=config.prompts.template,
            max_new_tokens=config.evaluate.max_new_tokens,
            stop=config.generate.stop,
            batch_size=config.generate.batch_size,
        )
    result = {
        "name": ns.name,
        "commit": git_commit(),
        "campaign": ns.campaign.name,
        "round": ns.round,
        "rows": len(examples),
        "overrides": ns.overrides,
        "seed": ns.seed,
        "train_seconds": round(trained["seconds"], 1),
        "steps": trained["steps"],
        "final_loss": trained["final_loss"],
        "eval_seconds": round(time.perf_counter() - started, 1),
        **{key: metrics[key] for key in ("accuracy", "ci_low", "ci_high", "items")},
    }
    append_line(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
