"""The few-shot prefix: drawn from the training split, fixed per campaign, used only where configured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs.loader import load_config
from tasks.arithmetic import parse_problem, problem_split
from tasks.judging.verifier import shows_work
from tasks.prompt_files import PromptFileError
from tasks.prompts import campaign_prompts, few_shot_prefix, uses_few_shot


def test_prefix_shows_worked_training_examples_and_is_stable() -> None:
    config = load_config("tiny", ["prompts.few_shot=3"])
    prefix = few_shot_prefix(config)
    shots = prefix.split("\n\n")
    assert shots[-1] == "" and len(shots) == 4  # three examples, each closed by a blank line
    for shot in shots[:3]:
        question, answer = shot.split("\nAnswer:")
        assert question.startswith("Question: ")
        op, a, b, _ = parse_problem(question.removeprefix("Question: "))  # type: ignore[misc]
        assert problem_split(op, a, b) == "train"
        assert answer.endswith(".") and "The answer is" in answer
    assert few_shot_prefix(config) == prefix
    assert few_shot_prefix(load_config("tiny", ["prompts.few_shot=3", "seed=1"])) != prefix


def test_under_the_ones_working_the_examples_show_it_and_the_splits_stay_the_same() -> None:
    plain = load_config("few-shot-start")
    ones = load_config("few-shot-start", ["prompts.working=ones"])
    shots = few_shot_prefix(ones).split("\n\n")[:3]
    assert all(shot.count("=") == 3 and shows_work(shot.split("\nAnswer:")[1]) for shot in shots), shots
    for split in ("train", "validation", "test"):
        a, b = campaign_prompts(plain, split, 1), campaign_prompts(ones, split, 1)
        assert [(r["id"], r["answer"]) for r in a] == [(r["id"], r["answer"]) for r in b]
    assert "working" not in plain.model_dump()["prompts"]  # plain keeps campaign identities as they were
    with pytest.raises(ValueError, match="prompts.working is for source 'arithmetic'"):
        load_config("tiny", ["prompts.source=file", "prompts.train_path=x.jsonl", "prompts.working=ones"])


def test_no_examples_no_prefix() -> None:
    assert few_shot_prefix(load_config("tiny")) == ""


def test_few_shot_rounds_limits_the_prefix_to_early_rounds() -> None:
    config = load_config("tiny", ["prompts.few_shot=2", "generate.few_shot_rounds=1"])
    assert [uses_few_shot(config, r) for r in (1, 2, 3)] == [True, False, False]
    every = load_config("tiny", ["prompts.few_shot=2"])
    assert all(uses_few_shot(every, r) for r in (1, 2, 3))
    assert not uses_few_shot(load_config("tiny"), 1)


def test_file_prompts_use_their_answers(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    rows = [{"prompt": "2+2?", "answer": "4"}, {"prompt": "Say hi"}, {"prompt": "3+1?", "answer": "4"}]
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n")
    base = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.heldout_path={heldout}"]
    prefix = few_shot_prefix(load_config("tiny", [*base, "prompts.few_shot=2"]))
    assert prefix.count(" The answer is 4.\n\n") == 2 and "Say hi" not in prefix
    with pytest.raises(PromptFileError, match="few_shot=3 needs that many rows with an answer; found 2"):
        few_shot_prefix(load_config("tiny", [*base, "prompts.few_shot=3"]))
