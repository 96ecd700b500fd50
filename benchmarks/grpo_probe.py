"""GRPO on Gemma from a policy that already answers in form: one round of RL with verifiable rewards on a finished
campaign's champion, scored on validation and the OOD development slice.

The Gemma ablation ran no GRPO arm: from the base every reward was 0 (`grpo_cost.json`), so no group had a signal.
The default's warm-started champion answers 0.75-0.86 of validation in the strict form, so its groups do. This
probe continues a finished round's adapter with `tasks.train_grpo.train_grpo` (TRL's GRPOTrainer, the campaign's
strict verifier with `judge.require_work` as the reward, the KL term to the round's own policy, a frozen copy TRL
keeps of the continued adapter) on the training prompts the campaign's next round would draw, with the campaign's
own training and sampling settings, then answers the campaign's 200 validation problems and the OOD development
slice greedily with the round's policy and with the GRPO one, paired item by item (exact McNemar). Test and the
OOD test slices stay untouched.

    .venv/bin/python benchmarks/grpo_probe.py runs/CAMPAIGN/round-02 [train.grpo.beta=0.0 ...]

Appends one JSON line to `benchmarks/results/grpo_probe.jsonl`: the GRPO metrics (reward mean and spread, the
share of groups with no signal, KL, first and last steps' rewards), its training seconds against the round's own
SFT training seconds (`train/seconds` in the round's MLflow run, when the campaign's store holds it), and each
item's credit.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from benchmarks._results import append_line
from benchmarks.ood_development import open_round_probe, probe_slices, score
from benchmarks.working_probe import credit, rate
from configs.loader import config_from_mapping
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy
from tasks.base_model import cache_root
from tasks.layout import round_seed
from tasks.prompts import campaign_prompts
from tasks.records import Record
from tasks.stats import mcnemar_exact, paired_counts
from tasks.tracking import git_commit
from tasks.tracking_store import tracking_uri
from tasks.train_grpo import train_grpo, verifier_reward

RESULTS = ROOT / "benchmarks" / "results" / "grpo_probe.jsonl"


def sft_seconds(config: CampaignConfig, round_dir: Path) -> float | None:
    """The round's own SFT training seconds (`train/seconds`) from its MLflow run, which `round_result.json` names,
    in the campaign's store (`tracking_uri`); None when the store does not hold the run."""
    run_id = json.loads((round_dir / "round_result.json").read_text(encoding="utf-8"))["run_id"]
    try:
        return MlflowClient(tracking_uri(config.tracking)).get_run(run_id).data.metrics.get("train/seconds")
    except MlflowException:
        return None


def paired(this: list[Record], first: list[Record]) -> dict[str, float]:
    """Exact McNemar of `this` against `first` on the same items (b: only `first` right, c: only `this`)."""
    counts = paired_counts([float(r["correct"]) for r in this], [float(r["correct"]) for r in first])
    return {"only_round_right": counts.b, "only_grpo_right": counts.c, "mcnemar_p": mcnemar_exact(counts.b, counts.c)}


def main() -> int:
    """Score the round's policy, train GRPO from it, score again, append one line."""
    ns, round_dir, campaign, adapter = open_round_probe(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument("overrides", nargs="*", help="dotted key=value changes to the config"),
    )
    config = config_from_mapping(campaign.model_dump(mode="json"), ns.overrides)
    next_round = int(round_dir.name.split("-")[-1]) + 1
    rows = campaign_prompts(config, "train", next_round)
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    slices = probe_slices(config, ns.n)
    model, tokenizer = load_policy(base, adapter)
    before = {name: score(model, tokenizer, config, problems) for name, problems in slices.items()}
    del model
    seed = round_seed(config.seed, next_round)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "adapter"
        started = time.perf_counter()
        result = train_grpo(
            base,
            adapter,
            rows,
            config.train,
            config.generate,
            out,
            template=config.prompts.template,
            reward=verifier_reward(
                config.judge.answer_pattern, config.generate.stop, require_work=config.requires_work
            ),
            seed=seed,
            progress=print,
        )
        seconds = time.perf_counter() - started
        model, tokenizer = load_policy(base, str(out))
        after = {name: score(model, tokenizer, config, problems) for name, problems in slices.items()}
    line: dict[str, object] = {
        "commit": git_commit(),
        "round": str(round_dir),
        "overrides": ns.overrides,
        "train_prompts": len(rows),
        "grpo": result.metrics,
        "step_rewards": result.step_rewards,
        "grpo_seconds": round(seconds, 1),
        "round_sft_seconds": sft_seconds(config, round_dir),
    }
    for name in slices:
        line[name] = {
            "round": {**rate(before[name]), "credit": credit(before[name])},
            "grpo": {**rate(after[name]), "credit": credit(after[name])},
            **paired(after[name], before[name]),
        }
    append_line(RESULTS, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
