"""Measure decoding with a LoRA merged into the base weights against PEFT's unmerged layers, on a campaign's policies.

Merging (`PeftModel.merge_and_unload` on a private copy of the weights) is the usual advice for LoRA inference,
and what selftrain's read-only policies do (`models.loading.merged_for_inference`); this measures what it pays on
the default campaign's passes against PEFT's unmerged layers:

- `greedy`: round 2's policy answering the validation set (the campaign's template, greedy, its batch size), as
  the campaign's evaluation does;
- `sample`: round 1's policy sampling round 2's prompts (k samples each at the campaign's temperature and round 2's
  seed), as round 2's generate does.

Merged and unmerged arms alternate `--repeats` times after a warm-up round (`interleaved_cpu_medians`): CPU seconds
per arm (median) and whether every run gave the same responses. Appends to `benchmarks/results/merged_lora.jsonl`.

Run: `.venv/bin/python benchmarks/merged_lora.py RUNS/CAMPAIGN [--repeats 2] [--threads 2]` (a finished campaign
of at least two rounds; about 12 minutes on the default's).
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from benchmarks._results import append_line
from benchmarks._timing import interleaved_cpu_medians
from benchmarks.ood_development import round_policy, score
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, merged_for_inference, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.generate import generate_responses
from tasks.layout import ADAPTER, PROMPTS, CampaignLayout, round_seed
from tasks.records import Record, read_records
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "merged_lora.jsonl"


def greedy_texts(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: CampaignConfig,
    records: list[Record],
) -> list[str]:
    """The policy's greedy answers to `records`, as the campaign's evaluation decodes them."""
    return [row["response"] for row in score(model, tokenizer, config, records)]


def sample_texts(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: CampaignConfig,
    records: list[Record],
    seed: int,
) -> list[str]:
    """The policy's samples of `records`, as the campaign's generate draws them with `seed`."""
    rows = generate_responses(
        HFSampler(model, tokenizer), records, config.generate, template=config.prompts.template, seed=seed
    )
    return [row["response"] for row in rows]


def record(outputs: list[list[str]], run: Callable[..., list[str]], model: PreTrainedModel | PeftModel) -> None:
    """Run `run(model)` and keep its texts in `outputs` (the timing helper discards what an arm returns)."""
    outputs.append(run(model))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path, help="a finished campaign folder (RUNS/NAME-DATE-ID)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    layout = CampaignLayout(ns.campaign)
    config, _ = round_policy(layout.round_dir(2))
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    validation = read_records(layout.split_prompts("validation"))
    prompts = read_records(layout.in_round(2, PROMPTS))

    results = {}
    for part, index in (("greedy", 2), ("sample", 1)):  # round 2's policy evaluates; round 1's samples round 2
        adapter = str(layout.in_round(index, ADAPTER))
        unmerged, tokenizer = load_policy(base, adapter)
        copy, _ = load_policy(base, adapter)  # merged in place: a private copy
        merged = merged_for_inference(copy)
        if part == "greedy":
            run = partial(greedy_texts, tokenizer=tokenizer, config=config, records=validation)
        else:
            run = partial(
                sample_texts, tokenizer=tokenizer, config=config, records=prompts, seed=round_seed(config.seed, 2)
            )
        outputs: list[list[str]] = []
        arms = {
            name: partial(record, outputs, run, model) for name, model in (("unmerged", unmerged), ("merged", merged))
        }
        cpu = interleaved_cpu_medians(arms, ns.repeats)
        results[part] = {name: round(value, 2) for name, value in cpu.items()} | {
            "ratio": round(cpu["merged"] / cpu["unmerged"], 3),
            "same_responses": all(out == outputs[0] for out in outputs),
        }

    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "campaign": ns.campaign.name,
            "threads": ns.threads,
            "repeats": ns.repeats,
            "validation_prompts": len(validation),
            "samples": len(prompts) * config.generate.k,
            "cpu_seconds_median": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
