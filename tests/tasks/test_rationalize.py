"""STaR rationalization (tasks.rationalize) and a tiny round's stages with judge.require_work, rationalization and the
curriculum's pass-rate table, called directly (no Prefect server) against a real MLflow store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from configs.schema import DEFAULT_ANSWER_PATTERN, CampaignConfig, GenerateConfig
from tasks.generate import generate_task
from tasks.judge import judge_task
from tasks.judging.verifier import is_correct, shows_work
from tasks.layout import round_seed
from tasks.prompts import prompts_task
from tasks.rationalize import failed_prompts, rationalize, rationalize_task
from tasks.records import ModelRef, read_records
from tasks.select import select_task
from tasks.tracking import RoundContext, start_run
from tasks.tracking_store import client_for

TEMPLATE = "Question: {prompt}\nAnswer:"


class ScriptedEngine:
    """A sampling engine (the `SamplingEngine` seam) that records what it is shown and answers from a script:
    the test is about which inputs rationalization builds and which answers it keeps, not about a model."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.shown: list[str] = []

    def sample(self, prompts: Sequence[str], *, n: int, **_: object) -> list[list[str]]:
        self.shown.extend(prompts)
        return [self.answers[text][:n] for text in prompts]


def test_failed_prompts_are_those_with_an_answer_and_no_passing_sample() -> None:
    judged = [
        {"id": "a", "prompt": "A", "answer": "1", "correct": False},
        {"id": "a", "prompt": "A", "answer": "1", "correct": True, "work": True},  # solved
        {"id": "b", "prompt": "B", "answer": "2", "correct": True, "work": False},  # a guess: not passed
        {"id": "c", "prompt": "C", "answer": None, "correct": False},  # no answer to hint with
        {"id": "d", "prompt": "D", "answer": "4", "correct": False},
        {"id": "d", "prompt": "D", "answer": "4", "correct": True, "source": "cascade"},  # not the policy's sample
    ]
    assert failed_prompts(judged) == [
        {"id": "b", "prompt": "B", "answer": "2"},
        {"id": "d", "prompt": "D", "answer": "4"},
    ]


def test_rationalize_shows_the_hint_keeps_verified_working_and_trains_on_the_bare_prompt() -> None:
    failed = [{"id": "p", "prompt": "What is 3 plus 4?", "answer": "7"}]
    hinted = TEMPLATE.format(prompt="What is 3 plus 4? (The answer is 7.)")
    engine = ScriptedEngine(
        {
            hinted: [
                " 3 + 4 = 7. The answer is 7.",  # kept
                " The answer is 7.",  # copies the hint without working: not kept under require_work
                " 3 + 4 = 8. The answer is 7.",  # a wrong step: not kept
                " 3 + 4 = 7. The answer is 7.",  # kept (selection dedupes later)
            ]
        }
    )
    cfg = GenerateConfig(k=4)
    kept = rationalize(
        engine, failed, cfg, template=TEMPLATE, seed=0, answer_pattern=DEFAULT_ANSWER_PATTERN, require_work=True
    )
    assert engine.shown == [hinted]  # the model saw the answer as a hint ...
    assert [row["response"] for row in kept] == [" 3 + 4 = 7. The answer is 7."] * 2
    assert all(row["prompt"] == "What is 3 plus 4?" for row in kept)  # ... training sees the bare prompt
    assert all(
        row["source"] == "rationalized" and row["score"] == 1.0 and row["correct"] and row["work"] for row in kept
    )
    assert [row["sample"] for row in kept] == [0, 3]
    lenient = rationalize(
        engine, failed, cfg, template=TEMPLATE, seed=0, answer_pattern=DEFAULT_ANSWER_PATTERN, require_work=False
    )
    assert len(lenient) == 4  # without require_work, the bare copy of the hint and the wrong step count too


def test_a_tiny_rounds_stages_with_require_work_rationalization_and_the_pass_rate_table(
    tiny_dir: Path, tmp_path: Path
) -> None:
    # The session's tiny model (40 warm-up steps) rarely gets a sum right with right working, so what this checks
    # holds for every row: what the stages keep, log and write follows require_work and the rationalization rules
    # (which answers rationalization keeps is shown on scripted answers above).
    config = CampaignConfig.model_validate(
        {
            "model": {"source": "tiny"},
            "prompts": {"train_size": 8, "curriculum": True, "level": 1},
            "generate": {"k": 4, "temperature": 1.0, "batch_size": 64, "rationalize": True},
            "tracking": {"output_dir": str(tmp_path), "experiment": "rationalize"},
        }
    )
    run_id = start_run(config.tracking, "round-1", params={}, tags={})
    ctx = RoundContext(tracking=config.tracking, round=1, seed=round_seed(0, 1), folder=str(tmp_path), run_id=run_id)
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    prompts = prompts_task.fn(config, "train", str(tmp_path / "prompts.jsonl"), ctx)
    generated = generate_task.fn(config, policy, prompts, str(tmp_path / "generated.jsonl"), ctx)
    judged = judge_task.fn(config, generated, str(tmp_path / "judged.jsonl"), ctx, policy=policy)
    rows = read_records(judged)
    assert len(rows) == 32  # require_work is on for the built-in task: every row is checked for working
    assert [row["work"] for row in rows] == [shows_work(row["response"]) for row in rows]
    assert [row["score"] for row in rows] == [float(row["correct"] and row["work"]) for row in rows]

    training = rationalize_task.fn(config, policy, judged, str(tmp_path / "rationalized.jsonl"), ctx)
    all_rows = read_records(training)
    assert all_rows[: len(rows)] == rows  # the round's own judged rows, unchanged, then the rationales
    rationales = all_rows[len(rows) :]
    failed = failed_prompts(rows)
    assert failed and {row["id"] for row in rationales} <= {row["id"] for row in failed}
    bare = {row["id"]: row["prompt"] for row in read_records(prompts)}
    for row in rationales:
        assert row["source"] == "rationalized" and row["prompt"] == bare[row["id"]]  # the hint is not trained on
        assert is_correct(row["response"], row["answer"]) and shows_work(row["response"])

    selected = read_records(select_task.fn(config, training, str(tmp_path / "selected.jsonl"), ctx))
    keepable = [row for row in all_rows if row["score"] >= config.select.threshold]
    assert len(selected) == len({(row["id"], row["response"].strip()) for row in keepable})  # <= 2 per prompt here
    assert all(shows_work(row["response"]) and is_correct(row["response"], row["answer"]) for row in selected)

    client = client_for(config.tracking)
    run = client.get_run(run_id)
    metrics = run.data.metrics
    assert metrics["rationalize/prompts"] == len(failed) and metrics["rationalize/kept"] == len(rationales)
    assert metrics["judge/work_rate"] == sum(row["work"] for row in rows) / 32
    assert metrics["curriculum/level"] == 1.0 and metrics["curriculum/fresh"] == 8.0
    assert {"round-1-pass-rates", "round-1-rationalized"} <= {d.dataset.name for d in run.inputs.dataset_inputs}
    assert "data/pass-rates.jsonl" in {f.path for f in client.list_artifacts(run_id, "data")}
    table = read_records(tmp_path / "pass-rates.jsonl")
    assert sorted((e["id"], e["round"], e["k"], e["level"]) for e in table) == sorted((i, 1, 4, 1) for i in bare)
    assert sum(e["passed"] for e in table) == sum(row["score"] for row in rows)
