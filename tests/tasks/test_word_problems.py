"""The word-problem files (configs/data/word-problems): problem-disjoint splits, worked solutions that verify, the
few-shot examples their config shows, and the no-guessing proof: with file prompts and judge.require_work, the real
judge and select steps drop a bare guess with the right number and keep right working."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from configs.loader import load_config
from configs.schema import CampaignConfig
from tasks.judge import require_work
from tasks.judging.base import judge_records
from tasks.judging.build import build_judge
from tasks.judging.verifier import is_correct, shows_work
from tasks.prompt_files import load_prompt_file
from tasks.prompts import few_shot_pairs, file_split, item_kind
from tasks.records import Record
from tasks.select import select_by

DATA = Path(__file__).resolve().parents[2] / "configs" / "data" / "word-problems"
SPLITS = ("train", "validation", "test")


def _raw(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _make() -> ModuleType:
    spec = importlib.util.spec_from_file_location("word_problems_make", DATA / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp_path: Path, *overrides: str) -> CampaignConfig:
    """configs/word-problems.yaml with its files found from anywhere and its tracking under tmp_path."""
    paths = [f"prompts.{split}_path={DATA / f'{split}.jsonl'}" for split in SPLITS]
    return load_config("word-problems", [*paths, f"tracking.output_dir={tmp_path}", *overrides])


def test_the_splits_share_no_problem_and_every_solution_shows_right_work() -> None:
    rows = {split: _raw(split) for split in SPLITS}
    assert [len(rows[split]) for split in SPLITS] == [300, 100, 102]
    # One computation in two splits would leak, told in other words, with the operands swapped ("4 * 5" in training,
    # "5 * 4" in validation) or as another kind's story (a change story's "50 - 6" and an age story's); the
    # hand-written test rows included.
    computation = _make().computation
    problems = {split: {computation(r["solution"]) for r in rows[split]} for split in SPLITS}
    assert "" not in problems["train"] | problems["validation"] | problems["test"]
    assert not problems["test"] & problems["train"]
    assert not problems["validation"] & problems["train"] and not problems["test"] & problems["validation"]
    assert (
        computation(" 4 * 5 = 20. 20 + 3 = 23.")
        == computation(" 5 * 4 = 20. 3 + 20 = 23.")
        != computation(" 5 - 4 = 1.")
    )
    hand = [r for r in rows["test"] if r["kind"] == "hand-written"]
    assert len(hand) >= 20 and len({r["kind"] for r in rows["train"]}) >= 7
    for row in (r for split in SPLITS for r in rows[split]):
        assert shows_work(row["solution"]) and is_correct(row["solution"], row["answer"]), row["id"]
        assert row["solution"].startswith(" ") and int(row["answer"]) >= 0
    # The files are what the seeded script writes (it is the record of how they were made).
    built = _make().build()
    assert all(built[split] == rows[split] for split in SPLITS)


def test_the_config_shows_three_worked_solutions_from_the_training_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.judge.require_work is True and config.train.init == "base" and config.evaluate.few_shot_baseline
    train = {r["prompt"]: r["solution"] for r in _raw("train")}
    pairs = few_shot_pairs(config)
    assert len(pairs) == 3
    for user, solution in pairs:
        question = user.removeprefix("Question: ").removesuffix("\nAnswer:")
        assert train[question] == solution and shows_work(solution)  # the file's working, not a bare answer
    assert load_prompt_file(DATA / "test.jsonl", require_answer=True)[-1]["solution"].endswith("The answer is 9.")


def test_the_claim_is_broken_down_by_the_file_s_kind_column(tmp_path: Path) -> None:
    config = _config(tmp_path)
    kinds = [item_kind(config)(row) for row in file_split(config.prompts, "test")]
    assert kinds == [row["kind"] for row in _raw("test")] and kinds.count("hand-written") == 22


def _judge_and_select(config: CampaignConfig) -> tuple[list[Record], list[Record]]:
    """Round 1's judge and select steps on scripted samples of four training prompts: per prompt a bare guess with
    the right number, the file's right working, and wrong working that ends on the right number.

    These are the pure parts `judge_task` and `select_task` run for the verifier judge, in their order (the tasks
    themselves run on the tiny model in test_rationalize.py; a new MLflow store would cost seconds here).
    """
    prompts = file_split(config.prompts, "train")[:4]
    generated = [
        {**row, "sample": i, "response": text}
        for row in prompts
        for i, text in enumerate(
            [f" The answer is {row['answer']}.", row["solution"], f" 1 + 1 = 3. The answer is {row['answer']}."]
        )
    ]
    judge = build_judge(config.judge, template=config.prompts.template)
    judged = judge_records(generated, judge, config.judge.answer_pattern)
    if config.requires_work:
        judged, _ = require_work(judged, config.judge.answer_pattern)
    selected = select_by(judged, config.select)
    return judged, selected


def test_with_require_work_a_bare_guess_with_the_right_number_is_not_kept_for_training(tmp_path: Path) -> None:
    judged, selected = _judge_and_select(_config(tmp_path))
    assert all(row["correct"] for row in judged)  # every sample states the right number in the stated form
    assert [row["work"] for row in judged] == [False, True, False] * 4
    assert [row["score"] for row in judged] == [0.0, 1.0, 0.0] * 4
    assert [row["response"] for row in selected] == [row["response"] for row in judged if row["sample"] == 1]
    assert all(shows_work(row["response"]) for row in selected)


def test_without_require_work_files_keep_the_bare_guess(tmp_path: Path) -> None:
    # The default for user files (judge.require_work empty): the strict answer check alone, so a right guess is
    # training data; this is why configs/word-problems.yaml sets require_work: true.
    judged, selected = _judge_and_select(_config(tmp_path, "judge.require_work=null"))
    assert "work" not in judged[0] and all(row["score"] == 1.0 for row in judged)
    kept = {(row["id"], row["sample"]) for row in selected}
    assert all((row["id"], 0) in kept for row in judged)  # the bare guess of every prompt is kept
