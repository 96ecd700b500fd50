"""Compare a campaign's final test answers with the base model behind plain worked examples.

A campaign scores the base behind *its* few-shot prefix (`evaluate.few_shot_baseline`). When a campaign changes
how examples are written (`prompts.working: ones`), that prefix changes too, and the base may imitate it worse
than plain ones (0.095 on test against 0.405): a lower bar, unless the campaign sets `evaluate.few_shot_working:
plain` (the default campaign does since 2026-12-05), which draws plain examples with the campaign's seed. This
script gives any finished campaign, and every seed, one fixed bar instead: it answers the campaign's test questions
with the base model behind configs/few-shot-start.yaml's examples (plain working, 20 new tokens: the default
before the warm start), greedily, and pairs the result with a round's `test-evaluated.jsonl` on the same items
(exact McNemar).

    .venv/bin/python benchmarks/few_shot_bar.py RUNS/CAMPAIGN round-05 [--split ood]

Prints one JSON line and appends it to `benchmarks/results/few_shot_bar.jsonl`.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import sys
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
from tasks.prompts import few_shot_prefix
from tasks.records import read_records
from tasks.stats import mcnemar_exact, paired_counts, paired_credit
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "few_shot_bar.jsonl"


def main() -> int:
    """Answer, pair, append."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path, help="a finished campaign's folder")
    parser.add_argument("round", help="the round whose test answers to compare, e.g. round-05")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", choices=("test", "ood"), default="test", help="the held-out set to pair on")
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    config = load_config("few-shot-start")
    test = read_records(ns.campaign / f"{ns.split}.jsonl")
    final = read_records(ns.campaign / ns.round / f"{ns.split}-evaluated.jsonl")
    model, tokenizer = load_policy(str(ensure_packaged_gemma(cache_root() / "models")), None)
    scored, metrics = evaluate_greedy(
        HFSampler(model, tokenizer),
        test,
        template=config.prompts.template,
        max_new_tokens=config.evaluate.max_new_tokens,
        stop=config.generate.stop,
        batch_size=config.generate.batch_size,
        prefix=few_shot_prefix(config),
    )
    _, policy, base = paired_credit(final, scored, names=("policy", "3-shot base", ns.split))
    counts = paired_counts(policy, base)
    result = {
        "commit": git_commit(),
        "campaign": ns.campaign.name,
        "round": ns.round,
        **({"split": ns.split} if ns.split != "test" else {}),
        "items": counts.items,
        "policy_accuracy": counts.candidate_right / counts.items,
        "base_3shot_plain_accuracy": metrics["accuracy"],
        "base_ci": [metrics["ci_low"], metrics["ci_high"]],
        "only_base_right": counts.b,
        "only_policy_right": counts.c,
        "mcnemar_p": mcnemar_exact(counts.b, counts.c),
    }
    append_line(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
