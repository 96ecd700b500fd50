"""Does a trained policy reach further beyond the training range with its adapter scaled toward the base or past it?

WiSE-FT (Wortsman et al., 2022) interpolates the weights of a fine-tuned model with those of the model it started
from and finds the mix more robust out of distribution than either end; extrapolating past the fine-tuned weights
(ExPO, Zheng et al., 2024) is the other direction. A `train.init: base` round's adapter is exactly a change to the
base, so scaling it by `s` (PEFT's `LoraLayer.set_scale`) gives the base at 0, the trained policy at 1, and beyond 1
the extrapolation, with no training at all.

This script loads one finished round's policy, and for each scale answers the campaign's 200 validation problems
and the OOD development slice (`working_probe.ood_development`: OOD problems that are in no reported OOD test
slice) greedily, as `ood_development.py` does (its `score`). Validation and the development slice only: test and
the OOD test slices stay untouched.

    .venv/bin/python benchmarks/adapter_scale.py runs/CAMPAIGN/round-02 --scales 1.0,0.85,0.7,0.5,1.2,1.4

Appends one JSON line per scale to `benchmarks/results/adapter_scale.jsonl`, with each item's credit in order.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peft.tuners.lora import LoraLayer

from benchmarks._results import append_line
from benchmarks.ood_development import open_round_probe, probe_slices, score
from benchmarks.working_probe import credit, rate
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy
from tasks.base_model import cache_root
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "adapter_scale.jsonl"


def main() -> int:
    """Score the round's policy at each scale, append one line per scale."""
    ns, round_dir, config, adapter = open_round_probe(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument(
            "--scales", default="1.0,0.85,0.7,0.5,1.2,1.4", help="comma-separated scales"
        ),
    )
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    model, tokenizer = load_policy(base, adapter)
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    slices = probe_slices(config, ns.n)
    commit = git_commit()
    for scale in (float(text) for text in ns.scales.split(",")):
        for layer in layers:
            layer.set_scale("default", scale)
        started = time.perf_counter()
        line: dict[str, object] = {"commit": commit, "round": str(round_dir), "scale": scale}
        for name, problems in slices.items():
            scored = score(model, tokenizer, config, problems)
            line[name] = {**rate(scored), "credit": credit(scored)}
        line["seconds"] = round(time.perf_counter() - started, 1)
        append_line(RESULTS, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
