"""What the default campaign's few-shot baseline costs, and scores, behind digit and behind plain examples.

The default campaign scores the base model once behind three worked examples on test and the OOD slice
(`evaluate.few_shot_baseline`). Written in the campaign's digit working (the examples then show three steps), the
base answers worse and at more length than behind plain examples (`evaluate.few_shot_working: plain`). This
script runs both arms' passes (test and OOD, greedy, the campaign's decoding settings) on the default config's
sets, alternated after a warm-up round (`benchmarks._timing.interleaved_cpu_medians`, CPU seconds), and reports
each arm's accuracy, new tokens and the CPU ratio.

    .venv/bin/python benchmarks/few_shot_baseline.py [--repeats 2] [--seed 0] [--splits test ood]

The bar's form (plain) was first chosen on this script's test figures; `--splits validation` asks whether
validation, which should have decided, chooses the same (warm_start_rounds.txt section 41).

Prints one JSON line and appends it to `benchmarks/results/few_shot_baseline.jsonl`.
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
from benchmarks._timing import interleaved_cpu_medians
from configs.loader import load_config
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.evaluate import evaluate_greedy
from tasks.prompts import campaign_prompts, few_shot_prefix
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "few_shot_baseline.jsonl"


def main() -> int:
    """Time both arms, check each arm answers the same every time, append the line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the campaign seed (its sets and examples)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--splits", nargs="+", default=["test", "ood"], help="the sets to score (validation: the form chosen there)"
    )
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    default = load_config("default", [f"seed={ns.seed}"])
    arms: dict[str, CampaignConfig] = {
        "digits": load_config(
            "default", [f"seed={ns.seed}", "evaluate.few_shot_working=null"]
        ).few_shot_baseline_config(),
        "plain": default.few_shot_baseline_config(),
    }
    sets = {split: campaign_prompts(default, split, 0) for split in ns.splits}
    model, tokenizer = load_policy(str(ensure_packaged_gemma(cache_root() / "models")), None)
    sampler = HFSampler(model, tokenizer)
    answers: dict[str, list[list[str]]] = {name: [] for name in arms}
    scores: dict[str, dict[str, float]] = {}

    def run(name: str) -> None:
        config = arms[name]
        before, texts = sampler.tokens_generated, []
        for split, rows in sets.items():
            scored, metrics = evaluate_greedy(
                sampler,
                rows,
                template=config.prompts.template,
                max_new_tokens=config.evaluate.max_new_tokens,
                stop=config.generate.stop,
                batch_size=config.generate.batch_size,
                prefix=few_shot_prefix(config),
            )
            texts += [row["response"] for row in scored]
            scores.setdefault(name, {})[f"{split}_accuracy"] = metrics["accuracy"]
        scores[name]["new_tokens"] = sampler.tokens_generated - before
        answers[name].append(texts)

    cpu = interleaved_cpu_medians({name: lambda name=name: run(name) for name in arms}, ns.repeats)
    result = {
        "commit": git_commit(),
        "seed": ns.seed,
        "splits": ns.splits,
        "repeats": ns.repeats,
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.items()},
        "plain_over_digits": round(cpu["plain"] / cpu["digits"], 3),
        **{name: scores[name] for name in arms},
        "same_answers_every_repeat": all(len({tuple(t) for t in texts}) == 1 for texts in answers.values()),
    }
    append_line(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
