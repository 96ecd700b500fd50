"""A ReST-EM round (`train.init: base`) and a GRPO round (`train.method: grpo`) through the round flow, on the tiny
model, against a private Prefect server and an MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from safetensors.torch import load_file

from configs.loader import load_config
from configs.schema import CampaignConfig, TrainConfig
from flows.round import RoundInputs, round_flow
from models.loading import resolve_train_dtype
from tasks.arithmetic import sample_problems
from tasks.evaluate import Evaluation, score_responses
from tasks.layout import ACCUMULATED, ADAPTER, ROUND_INPUT, CampaignLayout
from tasks.prompts import campaign_prompts
from tasks.records import DatasetRef, ModelRef, read_records, write_records
from tasks.tracking import start_run
from tasks.train_sft import train_sft

SMALL = [
    "prompts.train_size=6",
    "prompts.validation_size=6",
    "generate.k=2",
    "generate.max_new_tokens=16",
    "train.epochs=1",
    "train.batch_size=4",
    "evaluate.promotion_margin=1.0",
    "evaluate.max_new_tokens=16",
]


def _config(root: Path, *overrides: str) -> CampaignConfig:
    return load_config("tiny", [*SMALL, f"tracking.output_dir={root}", *overrides])


def _start(config: CampaignConfig, base: ModelRef, policy: ModelRef, root: Path) -> tuple[RoundInputs, DatasetRef]:
    """Round inputs whose champion is a policy that answered nothing (every round is promoted), and validation."""
    validation = write_records(root / "validation.jsonl", campaign_prompts(config, "validation", 0))
    scored, metrics = score_responses([{**row, "response": ""} for row in read_records(validation)])
    champion = Evaluation(split="validation", ref=write_records(root / "champion.jsonl", scored), metrics=metrics)
    state = RoundInputs(
        policy=policy, policy_source=None, champion=champion, champion_round=0, best_accuracy=0.0, base=base
    )
    return state, validation


def _run(config: CampaignConfig, index: int, state: RoundInputs, validation: DatasetRef, root: Path) -> tuple:
    parent = start_run(config.tracking, config.name, params={}, tags={"selftrain.kind": "campaign"})
    result = round_flow(config, index, state, validation, parent, str(root))
    run = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").get_run(result.run_id)
    return result, run


@pytest.mark.usefixtures("prefect_server")
def test_a_rest_em_round_trains_a_fresh_adapter_on_the_base_from_every_rounds_rows(
    tiny_dir: Path, tmp_path: Path
) -> None:
    base = ModelRef(source="tiny", base=str(tiny_dir))
    problems = sample_problems(4, split="train", seed=3)
    round1_rows = [{**p, "sample": 0, "response": p["solution"], "score": 1.0} for p in problems]
    round1_selected = write_records(tmp_path / "round1-selected.jsonl", round1_rows)
    examples = [{"prompt": "Question: " + p["prompt"] + "\nAnswer:", "completion": p["solution"]} for p in problems]
    round1 = tmp_path / "round1-adapter"
    train_sft(str(tiny_dir), None, examples, TrainConfig(epochs=2, batch_size=4, learning_rate=1e-2), round1, seed=0)
    assert any(t.abs().max() > 0 for k, t in load_file(round1 / "adapter_model.safetensors").items() if "lora_B" in k)

    # Round 2 at learning rate 1e-12 saves the adapter it started from: a fresh one on the base has every lora_B
    # at 0 (PEFT's initialisation); round 1's adapter, continued, would keep its non-zero lora_B.
    config = _config(tmp_path, "train.init=base", "train.learning_rate=1e-12", "train.max_per_prompt_accumulated=3")
    state, validation = _start(config, base, ModelRef(source="tiny", base=str(tiny_dir), adapter=str(round1)), tmp_path)
    state = state.model_copy(update={"earlier_selected": (round1_selected,)})
    result, run = _run(config, 2, state, validation, tmp_path)

    layout = CampaignLayout(tmp_path)
    adapter = layout.in_round(2, ADAPTER)
    saved = load_file(adapter / "adapter_model.safetensors")
    assert all(t.abs().max() < 1e-9 for k, t in saved.items() if "lora_B" in k)
    lineage = json.loads((adapter / "lineage.json").read_text())
    assert lineage["parent"]["adapter"] is None and lineage["parent"]["base"] == str(tiny_dir)
    assert lineage["train"]["init"] == "base"
    accumulated = layout.in_round(2, ACCUMULATED)
    assert lineage["data"]["path"] == str(accumulated.resolve())
    sources = json.loads(accumulated.with_name(ACCUMULATED + ".lineage.json").read_text())["sources"]
    assert [s["path"] for s in sources] == [round1_selected.path, result.selected.path]
    rows = read_records(accumulated)
    pairs = {(row["prompt"], row["response"]) for row in rows}
    assert {(row["prompt"], row["response"]) for row in round1_rows} <= pairs  # round 1's rows are trained on
    assert len(pairs) == len(rows)  # each (prompt, response) once
    assert run.data.tags["selftrain.trained_from"] == base.label
    assert run.data.metrics["train/accumulated_rows"] == len(rows)
    # ... while the round sampled from the latest promoted policy, round 1's adapter.
    assert json.loads(layout.in_round(2, ROUND_INPUT).read_text())["policy"]["adapter"] == str(round1)
    assert state.after(result).earlier_selected == (round1_selected, result.selected)


@pytest.mark.usefixtures("prefect_server")
def test_a_grpo_round_logs_reward_spread_signal_and_kl(tiny_dir: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path, "train.method=grpo", "train.grpo.num_generations=2", "train.grpo.max_steps=2", "generate.k=1"
    )
    base = ModelRef(source="tiny", base=str(tiny_dir))
    state, validation = _start(config, base, base, tmp_path)
    result, run = _run(config, 1, state, validation, tmp_path)

    assert result.candidate is not None and result.evaluation is not None
    metrics = run.data.metrics
    assert metrics["train/steps"] == 2 and metrics["train/completions"] == 2 * 4  # 2 steps of 4 (2 groups of 2)
    assert 0.0 <= metrics["train/reward_mean"] <= 1.0 and metrics["train/reward_std"] >= 0.0
    assert 0.0 <= metrics["train/no_signal_share"] <= 1.0
    assert metrics["train/kl"] >= 0.0 and metrics["train/seconds"] > 0.0
    lineage = json.loads((CampaignLayout(tmp_path).in_round(1, ADAPTER) / "lineage.json").read_text())
    assert lineage["data"]["path"].endswith("prompts.jsonl") and lineage["train"]["method"] == "grpo"


@pytest.mark.usefixtures("prefect_server")
def test_a_warm_start_round_trains_on_gold_rows_alone_and_the_next_round_on_its_own_samples(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """generate.from_round=2: round 1 samples nothing and trains on the gold examples alone, for
    train.warm_start_epochs; select.gold_rounds=1: round 2 samples from round 1's policy and trains on what it kept
    of its own, no gold rows, for train.epochs."""
    config = _config(
        tmp_path,
        "generate.from_round=2",
        "select.gold_examples=5",
        "select.gold_rounds=1",
        "select.threshold=0",
        "generate.rationalize=true",
        "train.warm_start_epochs=2",
        "train.base_dtype=auto",
        "train.head_dtype=auto",
    )
    base = ModelRef(source="tiny", base=str(tiny_dir))
    state, validation = _start(config, base, base, tmp_path)
    first, run = _run(config, 1, state, validation, tmp_path)

    assert read_records(first.judged) == []
    selected = read_records(first.selected)
    assert len(selected) == 5 and {row["source"] for row in selected} == {"gold"}
    assert first.candidate is not None and first.candidate.adapter is not None
    assert run.data.metrics["generate/samples"] == 0 and run.data.metrics["generate/few_shot"] == 0
    assert run.data.metrics["train/steps"] == 2 * 2  # 5 rows at batch 4, two epochs (train.epochs is 1)
    adapter_lineage = json.loads((CampaignLayout(tmp_path).in_round(1, ADAPTER) / "lineage.json").read_text())
    assert adapter_lineage["train"]["epochs"] == 2
    # auto is resolved by this machine's CPU, and the lineage and metrics say which dtype trained.
    resolved = resolve_train_dtype("auto")
    assert adapter_lineage["train"].get("base_dtype", "float32") == resolved  # float32 is left out of dumps
    assert run.data.metrics["train/base_bfloat16"] == float(resolved == "bfloat16")
    assert adapter_lineage["train"].get("head_dtype", "float32") == resolved
    assert run.data.metrics["train/head_bfloat16"] == float(resolved == "bfloat16")

    second, run = _run(config, 2, state.after(first), validation, tmp_path)
    assert run.data.metrics["generate/samples"] == 6 * 2
    sampled_from = json.loads(CampaignLayout(tmp_path).in_round(2, ROUND_INPUT).read_text())["policy"]
    assert sampled_from == first.candidate.model_dump()
    kept = read_records(second.selected)
    assert kept and all(row.get("source") != "gold" and row["sample"] >= 0 for row in kept)
    adapter_lineage = json.loads((CampaignLayout(tmp_path).in_round(2, ADAPTER) / "lineage.json").read_text())
    assert adapter_lineage["train"]["epochs"] == 1
