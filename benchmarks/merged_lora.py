"""Measure decoding with a LoRA merged into the base weights against PEFT's unmerged layers, on a campaign's policies.

Merging (`PeftModel.merge_and_unload`, here on a private copy) is the usual advice for LoRA inference. selftrain
decodes through the unmerged adapter; this checks whether merging would pay on the default campaign's passes:

- `greedy`: round 2's policy answering the validation set (the campaign's template, greedy, its batch size), as
  the campaign's evaluation does;
- `sample`: round 1's policy sampling round 2's prompts (k samples each at the campaign's temperature and round 2's
  seed), as round 2's generate does.

Merged and unmerged arms alternate `--repeats` times; wall seconds per arm (median) and whether the two give the
same responses. Appends to `benchmarks/results/merged_lora.jsonl`.

Run: `.venv/bin/python benchmarks/merged_lora.py RUNS/CAMPAIGN [--repeats 2] [--threads 2]` (a finished campaign
of at least two rounds; about 5 minutes on the default's).
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from benchmarks._results import append_line
from benchmarks.ood_development import score
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.generate import generate_responses
from tasks.layout import ADAPTER, CampaignLayout
from tasks.records import Record, read_records
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "merged_lora.jsonl"


def alternate(arms: dict[str, Callable[[], list[str]]], repeats: int) -> tuple[dict[str, float], bool]:
    """Run the arms in turn `repeats` times: median wall seconds per arm, and whether every run gave the same texts."""
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    outputs: list[list[str]] = []
    for _ in range(repeats):
        for name, arm in arms.items():
            started = time.perf_counter()
            outputs.append(arm())
            seconds[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(values), 2) for name, values in seconds.items()}, all(
        out == outputs[0] for out in outputs
    )


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path, help="a finished campaign folder (RUNS/NAME-DATE-ID)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    layout = CampaignLayout(ns.campaign)
    config = CampaignConfig.model_validate_json(layout.config.read_text(encoding="utf-8"))
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    round1, round2 = ns.campaign / "round-01", ns.campaign / "round-02"
    seed = json.loads((round2 / "generated.jsonl.lineage.json").read_text(encoding="utf-8"))["seed"]
    validation = read_records(ns.campaign / "validation.jsonl")
    prompts = read_records(round2 / "prompts.jsonl")

    results = {}
    for part, adapter in (("greedy", round2 / ADAPTER), ("sample", round1 / ADAPTER)):
        unmerged, tokenizer = load_policy(base, str(adapter))
        copy, _ = load_policy(base, str(adapter))  # merged in place: a private copy
        merged = cast(PeftModel, copy).merge_and_unload()
        if part == "greedy":
            run = partial(greedy_texts, tokenizer=tokenizer, config=config, records=validation)
        else:
            run = partial(sample_texts, tokenizer=tokenizer, config=config, records=prompts, seed=seed)
        seconds, same = alternate({"unmerged": partial(run, unmerged), "merged": partial(run, merged)}, ns.repeats)
        results[part] = {**seconds, "ratio": round(seconds["merged"] / seconds["unmerged"], 3), "same_responses": same}

    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "campaign": ns.campaign.name,
            "threads": ns.threads,
            "repeats": ns.repeats,
            "validation_prompts": len(validation),
            "samples": len(prompts) * config.generate.k,
            "wall_seconds_median": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
