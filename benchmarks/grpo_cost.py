"""Measure a GRPO round's training cost against an SFT round's on the same prompts and model.

For each model, on one round's training prompts of its campaign config (`tiny.yaml`; for Gemma `default.yaml`
shrunk by the options), the two ways a round can train are timed in this process, one torch thread:

- `sft`: what an SFT round does: sample `generate.k` responses per prompt (`tasks.generate.generate_responses`,
  selftrain's sampler, behind the few-shot prefix when the campaign's round 1 uses it), verify them strictly, select
  (`tasks.select.select` with the config's rules), LoRA SFT on the kept rows (`tasks.train_sft.train_sft`);
- `grpo`: `tasks.train_grpo.train_grpo` on the same prompts with the config's train settings and
  `train.grpo` (num_generations, steps): TRL samples its own groups with `model.generate`, scores them with the
  strict verifier, and takes policy-gradient steps.

A GRPO round still runs generate and judge (cheap k) for its pass-rate metrics, and both rounds then evaluate
the same way, so the difference per round is `grpo.seconds` against `sft.train_seconds` (plus, for a GRPO round
that keeps the SFT round's k, nothing saved on sampling). Prints a table and writes
`benchmarks/results/grpo_cost.json` (with the git commit and the load average: the cores are shared).

Run: `.venv/bin/python benchmarks/grpo_cost.py [--models tiny,gemma] [--prompts 32] [--grpo-steps N]`.
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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configs.loader import load_config
from configs.schema import CampaignConfig
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import prepare_base
from tasks.generate import generate_responses
from tasks.judging.verifier import verify_rows
from tasks.prompts import campaign_prompts, few_shot_prefix, uses_few_shot
from tasks.select import select_by, to_sft_examples
from tasks.tracking import git_commit
from tasks.train_grpo import train_grpo, verifier_reward
from tasks.train_sft import train_sft

RESULTS = ROOT / "benchmarks" / "results" / "grpo_cost.json"
CONFIGS = {"tiny": ("tiny", []), "gemma": ("default", ["generate.k=2", "train.batch_size=8"])}


def sft_round(config: CampaignConfig, base: str, prompts: list[dict], work: Path) -> dict[str, Any]:
    """Sample, verify, select and SFT-train as an SFT round does; seconds of each part."""
    started = time.perf_counter()
    model, tokenizer = load_policy(base)
    prefix = few_shot_prefix(config) if uses_few_shot(config, 1) else ""  # round 1 samples as the campaign does
    rows = generate_responses(
        HFSampler(model, tokenizer), prompts, config.generate, template=config.prompts.template, seed=1, prefix=prefix
    )
    generate_seconds = time.perf_counter() - started
    judged = [{**row, "score": 1.0 if row["correct"] else 0.0} for row in verify_rows(rows)]
    kept = select_by(judged, config.select)
    examples = to_sft_examples(kept, config.prompts.template)
    metrics = train_sft(base, None, examples, config.train, work / "sft", seed=1) if examples else {}
    return {
        "generate_seconds": generate_seconds,
        "samples": len(rows),
        "pass_rate": sum(1 for row in judged if row["correct"]) / max(len(judged), 1),
        "examples": len(examples),
        "train_seconds": metrics.get("seconds", 0.0),
        "train_steps": metrics.get("steps", 0.0),
    }


def grpo_round(config: CampaignConfig, base: str, prompts: list[dict], work: Path) -> dict[str, Any]:
    """GRPO on the same prompts with the config's settings; its metrics (seconds include its own sampling)."""
    result = train_grpo(
        base,
        None,
        prompts,
        config.train,
        config.generate,
        work / "grpo",
        template=config.prompts.template,
        reward=verifier_reward(config.judge.answer_pattern, config.generate.stop),
        seed=1,
        progress=print,
    )
    return {key: round(value, 4) for key, value in result.metrics.items()}


def measure(name: str, n_prompts: int, grpo_steps: int | None) -> dict[str, Any]:
    """Both rounds' costs for one model."""
    path, overrides = CONFIGS[name]
    extra = [f"train.grpo.max_steps={grpo_steps}"] if grpo_steps else []
    config = load_config(path, [*overrides, "train.method=grpo", *extra])
    shared = Path.home() / ".cache" / "selftrain" / "models" / "gemma3-270m-1.0.0"  # the converted Gemma, read only
    base = str(shared) if name == "gemma" and (shared / "config.json").exists() else prepare_base(config).base
    prompts = campaign_prompts(config, "train", 1)[:n_prompts]
    with tempfile.TemporaryDirectory() as scratch:
        sft = sft_round(
            config.model_copy(update={"train": config.train.model_copy(update={"method": "sft"})}),
            base,
            prompts,
            Path(scratch),
        )
        grpo = grpo_round(config, base, prompts, Path(scratch))
    sft_total = sft["generate_seconds"] + sft["train_seconds"]
    return {
        "model": name,
        "prompts": len(prompts),
        "settings": {
            "generate.k": config.generate.k,
            "generate.max_new_tokens": config.generate.max_new_tokens,
            "train.batch_size": config.train.batch_size,
            "train.epochs": config.train.epochs,
            "train.grpo": config.train.grpo.model_dump(),
        },
        "sft": {key: round(value, 4) if isinstance(value, float) else value for key, value in sft.items()},
        "grpo": grpo,
        "grpo_seconds_per_step": round(grpo["seconds"] / max(grpo["steps"], 1), 3),
        "sft_seconds_per_step": round(sft["train_seconds"] / max(sft["train_steps"], 1), 3),
        "grpo_train_over_sft_train": round(grpo["seconds"] / max(sft["train_seconds"], 1e-9), 2),
        "grpo_train_over_sft_generate_plus_train": round(grpo["seconds"] / max(sft_total, 1e-9), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, gemma")
    parser.add_argument("--prompts", type=int, default=32, help="training prompts of the round")
    parser.add_argument("--grpo-steps", type=int, default=None, help="cap on GRPO steps (default: train.epochs)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    set_torch_threads(1)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    for name in args.models.split(","):
        result = measure(name, args.prompts, args.grpo_steps)
        print(json.dumps(result, indent=2))
        saved["runs"][name] = {
            **result,
            "git_commit": git_commit(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0],
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
