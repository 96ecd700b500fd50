"""Tests of reward-model training (tasks.train_reward): correct-vs-wrong pairs, RewardTrainer training, and
the reward model of a round (trained from earlier rounds, or bootstrapped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from transformers import set_seed

from configs.loader import load_config
from models.reward_scorer import RewardScorer, load_reward_model, reward_text
from tasks.judging.build import build_judge
from tasks.records import ModelRef, Record, write_records
from tasks.train_reward import correct_wrong_pairs, reward_rows, round_reward_model

TEMPLATE = "Question: {prompt}\nAnswer:"  # as tests/tasks/conftest.py trains with


def test_correct_wrong_pairs_hand_made() -> None:
    rows = [
        {"prompt": "p1", "response": "a", "correct": True},
        {"prompt": "p1", "response": "b", "correct": False},
        {"prompt": "p1", "response": "b", "correct": False},  # duplicate response: counted once
        {"prompt": "p1", "response": "c", "correct": False},
        {"prompt": "p2", "response": "d", "correct": True},  # only correct: no pair
        {"prompt": "p3", "response": "e"},  # unlabelled: ignored
        {"prompt": "p3", "response": "f", "correct": False},
    ]
    pairs = correct_wrong_pairs(rows, template="Q: {prompt}", per_prompt=5, seed=1)
    assert sorted((p["prompt"], p["chosen"], p["rejected"]) for p in pairs) == [
        ("Q: p1", "a", "b"),
        ("Q: p1", "a", "c"),
    ]
    capped = correct_wrong_pairs(rows, per_prompt=1, seed=1)
    assert len(capped) == 1 and capped[0]["prompt"] == "p1" and capped[0]["chosen"] == "a"
    assert correct_wrong_pairs(rows, per_prompt=1, seed=1) == capped  # seeded
    assert {tuple(correct_wrong_pairs(rows, per_prompt=1, seed=s)[0].values()) for s in range(20)} == {
        ("p1", "a", "b"),
        ("p1", "a", "c"),
    }


def _mean_margin(scorer: RewardScorer, pairs: Sequence[dict[str, str]]) -> float:
    prompts = [p["prompt"] for p in pairs]
    chosen = scorer.score(prompts, [p["chosen"] for p in pairs])
    rejected = scorer.score(prompts, [p["rejected"] for p in pairs])
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def test_training_raises_the_margin(tiny_dir: Path, trained_reward_model: tuple[Path, list[dict], dict]) -> None:
    out, pairs, metrics = trained_reward_model
    set_seed(0)  # the same fresh score head training started from
    before = _mean_margin(RewardScorer(*load_reward_model(str(tiny_dir))), pairs)
    after = _mean_margin(RewardScorer(*load_reward_model(str(out))), pairs)
    assert metrics["pairs"] == len(pairs) == 24 and metrics["steps"] == 15
    assert after > before + 0.05, (before, after)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["base"] == str(tiny_dir) and lineage["pairs"] == 24 and lineage["seed"] == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_reward_text_appends_eos_once() -> None:
    assert reward_text("Q:", " 3", "</s>") == "Q: 3</s>"
    assert reward_text("Q:", " 3</s>", "</s>") == "Q: 3</s>"
    assert reward_text("Q:", " 3", None) == "Q: 3"


def _with_answers(rows: list[Record]) -> list[Record]:
    """The rows as generated rows of a round: `answer` (a + b) instead of `correct`, each response closed with a
    period (the verifier credits only "The answer is N." at the end)."""
    out = []
    for row in rows:
        a, b = (int(x) for x in row["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
        generated = {k: v for k, v in row.items() if k != "correct"} | {"answer": str(a + b)}
        out.append(generated | {"response": row["response"] + "."})
    return out


def test_round_reward_model_trains_from_earlier_rounds_or_bootstraps(
    tiny_dir: Path, tmp_path: Path, labelled_sums: list[Record]
) -> None:
    earlier = [write_records(tmp_path / "round-01" / "judged.jsonl", labelled_sums)]
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    rows = _with_answers(labelled_sums[:8])
    # bootstrap=64 asks for more than the earlier round holds: still only earlier rounds' rows are learnt from.
    overrides = ["judge.kind=reward-model", "judge.reward_epochs=1", "judge.bootstrap=64"]
    config = load_config("tiny", overrides)
    out = tmp_path / "round-02" / "reward-model"
    path, metrics, facts = round_reward_model(config, rows, policy, earlier, out, seed=3)
    judge = build_judge(config.judge, template=config.prompts.template, reward_model=path)
    assert facts["from_rounds"] == 24 and facts["bootstrapped"] == 0
    # Half the rows (3 whole prompts of 6) are held out to calibrate the threshold: 12 rows, 12 pairs train.
    trained_on, validation, _ = reward_rows(config.judge, rows, earlier, seed=3)
    assert facts["validation_rows"] == len(validation) == 12 and len(trained_on) == 12
    assert not {r["prompt"] for r in trained_on} & {r["prompt"] for r in validation}
    assert metrics["reward_pairs"] == 12 and metrics["bank_size"] == 12
    assert (out / "lineage.json").exists() and len(judge.score(rows)) == 8
    # Round 1: no earlier rounds, so the round's own rows are labelled by the verifier.
    config = load_config("tiny", [*overrides[:2], "judge.bootstrap=8"])
    out = tmp_path / "round-01" / "reward-model"
    path, metrics, facts = round_reward_model(config, rows, policy, [], out, seed=3)
    assert facts["from_rounds"] == 0 and facts["bootstrapped"] == 8 and facts["validation_rows"] == 4
    assert metrics["reward_pairs"] == 4  # 2 prompts, one held out; 2 correct x 2 wrong responses, 4 pairs
