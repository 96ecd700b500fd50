"""Verified resampling at evaluation (`evaluate.resample_failed_working`) on the real tiny model, called directly (no
Prefect server) against a real MLflow store: what it keeps of greedy decoding, what it replaces, what it logs."""

from __future__ import annotations

from pathlib import Path

from configs.schema import CampaignConfig
from tasks.evaluate import evaluate_task
from tasks.judging.verifier import shows_work
from tasks.layout import round_seed
from tasks.prompts import prompts_task
from tasks.records import ModelRef, read_records
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
    assert metrics["resampled"] == sum(row["resampled"] for row in rows)
    assert metrics["accuracy"] == sum(row["correct"] for row in rows) / len(rows)
    logged = client_for(greedy_config.tracking).get_run(run_id).data.metrics
    assert logged["val/greedy_accuracy"] == greedy.accuracy and logged["val/working_fails"] == failed
    assert "greedy_accuracy" not in greedy.metrics  # greedy only: its figures are as before the option
    again = evaluate_task.fn(resampling_config, policy, prompts, str(tmp_path / "again.jsonl"), ctx)
    assert read_records(again.ref) == rows  # seeded: the same samples each time
