"""Score campaigns' policies on the OOD development slice, to choose between recipes without touching the
OOD slices that report.

A campaign's OOD slice (operands beyond the training range, phrasings never trained on) only reports. To choose
a recipe for its reach beyond the range, this script answers the problems of `working_probe.ood_development`
(the same kind, none a problem of the OOD slice of campaign seeds 0-2) greedily with each policy named, and
pairs every policy with the first on the same items (exact McNemar).

A policy is a round folder of a finished campaign (`RUNS/CAMPAIGN/round-02`: its adapter on the base, with the
campaign's template and `evaluate.max_new_tokens`), or `base-3shot`: the base behind configs/few-shot-start.yaml's
plain worked examples, greedy (the bar of `few_shot_bar.py`).

    .venv/bin/python benchmarks/ood_development.py runs/A/round-02 runs/B/round-02 base-3shot

Prints one JSON line and appends it to `benchmarks/results/ood_development.jsonl`.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from benchmarks._results import append_line
from benchmarks.working_probe import credit, ood_development, rate
from configs.loader import load_config
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.evaluate import evaluate_greedy
from tasks.layout import ADAPTER, CampaignLayout
from tasks.prompts import campaign_prompts, few_shot_prefix
from tasks.records import Record
from tasks.stats import mcnemar_exact, paired_counts
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "ood_development.jsonl"
BASE = "base-3shot"


def answer(policy: str, problems: list[Record], base: str) -> list[Record]:
    """`policy`'s scored answers to `problems` (see the module's docstring for what a policy is)."""
    if policy == BASE:
        config = load_config("few-shot-start")
        adapter, prefix = None, few_shot_prefix(config)
    else:
        config, adapter = round_policy(Path(policy))
        prefix = ""
    model, tokenizer = load_policy(base, adapter)
    return score(model, tokenizer, config, problems, prefix=prefix)


def open_round_probe(
    description: str, more: Callable[[argparse.ArgumentParser], object] = lambda _parser: None
) -> tuple[argparse.Namespace, Path, CampaignConfig, str]:
    """The command line of a probe of one finished round (the round folder, the development slice's size `--n`,
    `--threads`, and what `more` adds), parsed, with torch's threads set and the round's config and adapter."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("round", help="a finished campaign's round folder (RUNS/CAMPAIGN/round-NN)")
    parser.add_argument("--n", type=int, default=150, help="problems in the OOD development slice")
    parser.add_argument("--threads", type=int, default=2)
    more(parser)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    round_dir = Path(ns.round)
    return ns, round_dir, *round_policy(round_dir)


def probe_slices(config: CampaignConfig, n: int) -> dict[str, list[Record]]:
    """What a probe of a round may read: the campaign's validation problems and `n` problems of the OOD
    development slice (never test or a reported OOD slice)."""
    return {
        "validation": campaign_prompts(config, "validation", 0),
        "development": ood_development(load_config("default"), n),
    }


def round_policy(round_dir: Path) -> tuple[CampaignConfig, str]:
    """A finished round's campaign config (its campaign folder's `config.json`) and the round's adapter folder."""
    layout = CampaignLayout(round_dir.parent)
    return CampaignConfig.model_validate_json(layout.config.read_text(encoding="utf-8")), str(round_dir / ADAPTER)


def score(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: CampaignConfig,
    problems: list[Record],
    *,
    prefix: str = "",
) -> list[Record]:
    """A loaded policy's greedy answers to `problems`, scored, with `config`'s template, `evaluate.max_new_tokens`,
    stop strings and batch size (as the campaign evaluates)."""
    scored, _ = evaluate_greedy(
        HFSampler(model, tokenizer),
        problems,
        template=config.prompts.template,
        max_new_tokens=config.evaluate.max_new_tokens,
        stop=config.generate.stop,
        batch_size=config.generate.batch_size,
        prefix=prefix,
    )
    return scored


def _right(rows: list[Record]) -> list[float]:
    return [float(row["correct"]) for row in rows]


def main() -> int:
    """Answer with each policy, pair with the first, append."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="+", help=f"round folders of finished campaigns, or {BASE}")
    parser.add_argument("--n", type=int, default=150, help="problems in the development slice")
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    problems = ood_development(load_config("default"), ns.n)
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    scored = {policy: answer(policy, problems, base) for policy in ns.policies}
    first = ns.policies[0]
    results = {}
    for policy, rows in scored.items():
        results[policy] = {**rate(rows), "credit": credit(rows)}
        if policy != first:
            counts = paired_counts(_right(rows), _right(scored[first]))  # b: only the first right; c: only this
            results[policy] |= {
                "only_first_right": counts.b,
                "only_this_right": counts.c,
                "mcnemar_p": mcnemar_exact(counts.b, counts.c),
            }
    append_line(RESULTS, {"commit": git_commit(), "items": len(problems), "policies": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
