"""Verified resampling at evaluation (`evaluate.resample_failed_working`) on the real tiny model, called directly (no
Prefect server) against a real MLflow store: what it keeps of greedy decoding, what it replaces, what it logs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from configs.schema import CampaignConfig
from models.loading import load_policy
from models.sampling import HFSampler, SamplingEngine
from tasks.arithmetic import sample_problems
from tasks.evaluate import answer_greedy, evaluate_task, resample_failed_working
from tasks.judging.verifier import shows_work
from tasks.layout import round_seed
from tasks.prompts import prompts_task
from tasks.records import ModelRef, Record, read_records
from tasks.sharding import ENGINE_OPTIONS, ShardStep, in_prompt_order, plan_step
from tasks.tracking import RoundContext, start_run
from tasks.tracking_store import client_for


def test_a_tiny_policys_failed_working_is_resampled_and_its_greedy_figures_are_kept(
    tiny_dir: Path, tmp_path: Path
) -> None:
    def config(k: int) -> CampaignConfig:
        return CampaignConfig.model_validate(
            {
                "model": {"source": "tiny"},
                "prompts": {"validation_size": 24},
                "generate": {"temperature": 1.0, "batch_size": 64},
                "evaluate": {"resample_failed_working": k},
                "tracking": {"output_dir": str(tmp_path), "experiment": "resampling"},
            }
        )

    greedy_config, resampling_config = config(0), config(4)
    run_id = start_run(greedy_config.tracking, "round-0", params={}, tags={})
    ctx = RoundContext(
        tracking=greedy_config.tracking, round=0, seed=round_seed(0, 0), folder=str(tmp_path), run_id=run_id
    )
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    prompts = prompts_task.fn(greedy_config, "validation", str(tmp_path / "validation.jsonl"), ctx)
    greedy = evaluate_task.fn(greedy_config, policy, prompts, str(tmp_path / "greedy.jsonl"), ctx)
    resampled = evaluate_task.fn(resampling_config, policy, prompts, str(tmp_path / "resampled.jsonl"), ctx)

    plain, rows = read_records(greedy.ref), read_records(resampled.ref)
    assert [row["greedy_response"] for row in rows] == [row["response"] for row in plain]  # the same greedy pass
    assert [row["greedy_correct"] for row in rows] == [row["correct"] for row in plain]
    for before, after in zip(plain, rows, strict=True):
        if shows_work(before["response"]):  # working that holds is never resampled
            assert after["response"] == before["response"] and not after["resampled"]
        elif after["resampled"]:  # a replacement's working holds
            assert shows_work(after["response"])
    failed = sum(not shows_work(row["response"]) for row in plain)
    assert failed > 0  # the tiny model's working fails somewhere, so the resampling path ran
    metrics = resampled.metrics
    assert metrics["greedy_accuracy"] == greedy.accuracy and metrics["working_fails"] == failed
    # its interval is the greedy-only run's own: the same answers, grouped by the same problems
    assert (metrics["greedy_ci_low"], metrics["greedy_ci_high"]) == (
        greedy.metrics["ci_low"],
        greedy.metrics["ci_high"],
    )
    assert metrics["resampled"] == sum(row["resampled"] for row in rows)
    assert metrics["accuracy"] == sum(row["correct"] for row in rows) / len(rows)
    logged = client_for(greedy_config.tracking).get_run(run_id).data.metrics
    assert logged["val/greedy_accuracy"] == greedy.accuracy and logged["val/working_fails"] == failed
    assert "greedy_accuracy" not in greedy.metrics  # greedy only: its figures are as before the option
    again = evaluate_task.fn(resampling_config, policy, prompts, str(tmp_path / "again.jsonl"), ctx)
    assert read_records(again.ref) == rows  # seeded: the same samples each time


class Recording:
    """A sampler that keeps what it drew for each prompt id (the tiny model's samples rarely show working that
    holds, so the rows alone would hide a difference in the samples)."""

    def __init__(self, engine: SamplingEngine) -> None:
        self.engine, self.drawn = engine, {}

    def sample(self, prompts: Sequence[str], **options: Any) -> list[list[str]]:
        out = self.engine.sample(prompts, **options)
        self.drawn.update(zip(options.get("prompt_ids") or [], out, strict=True))
        return out


def test_resampling_spread_over_planned_shards_equals_one_process(tiny_dir: Path) -> None:
    # What evaluate.shards > 1 does with the failed working (tasks.evaluate.shard_rows), with each planned part
    # sampled apart in this process where map_shards gives it a Ray worker (tests/integration/test_sharding.py).
    rows = [
        {"id": p["id"], "prompt": p["prompt"], "answer": p["answer"]}
        for p in sample_problems(24, split="heldout", seed=1)
    ]
    model, tokenizer = load_policy(str(tiny_dir))
    options = {"template": "Question: {prompt}\nAnswer:", "max_new_tokens": 16, "stop": ["\n"], "batch_size": 8}
    answered = answer_greedy(HFSampler(model, tokenizer, **ENGINE_OPTIONS), rows, **options)
    whole_engine, shard_engine = (Recording(HFSampler(model, tokenizer, **ENGINE_OPTIONS)) for _ in range(2))
    sent: list[list[Record]] = []

    def shard(part: list[Record], step: ShardStep) -> list[Record]:
        sent.append(part)
        plan = plan_step(tokenizer, part, step, 3)
        assert len(plan) == 3  # really split: 4 samples of each failed row, batches of 8
        return in_prompt_order(plan, [step(shard_engine, [part[i] for i in piece]) for piece in plan])

    sampling = {"k": 4, "temperature": 1.0, "top_p": 1.0, "seed": 5}
    whole, counts = resample_failed_working(whole_engine, answered, **sampling, **options)
    spread, spread_counts = resample_failed_working(whole_engine, answered, **sampling, **options, shard=shard)
    assert spread == whole and spread_counts == counts
    assert shard_engine.drawn == whole_engine.drawn  # each failed row drew the same 4 samples either way
    assert len({text for texts in whole_engine.drawn.values() for text in texts}) > 20  # real, varied samples
    assert [row["id"] for row in sent[0]] == [row["id"] for row in answered if not shows_work(row["response"])]
    assert len(sent) == 1 and counts["working_fails"] == len(sent[0]) > 0  # only failed working is sent
