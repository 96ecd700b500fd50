"""Tests of the reward-model judge: preference pairs, RewardTrainer training, the judges and the config."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from transformers import set_seed

from configs.loader import ConfigError, load_config
from configs.schema import JudgeConfig
from models.reward_scorer import RewardScorer, load_reward_model, reward_text
from tasks.records import Record
from tasks.reward_model import (
    AllOfJudge,
    RewardModelJudge,
    make_reward_judge,
    preference_pairs,
    train_reward_model,
)

TEMPLATE = "Question: {prompt}\nAnswer:"


def _judged_set() -> list[Record]:
    """Per prompt a + b: two correct responses and two wrong ones, plus rows without labels."""
    rows: list[Record] = []
    for a, b in [(1, 2), (3, 4), (2, 5), (6, 1), (4, 4), (7, 2)]:
        prompt = f"What is {a} + {b}?"
        for response, correct in [
            (f" {a} + {b} = {a + b}. The answer is {a + b}", True),
            (f" The answer is {a + b}", True),
            (f" {a} + {b} = {a + b + 3}. The answer is {a + b + 3}", False),
            (f" The answer is {a * b + 10}", False),
        ]:
            rows.append({"id": prompt, "prompt": prompt, "response": response, "correct": correct})
    return rows


def test_preference_pairs_hand_made() -> None:
    rows = [
        {"prompt": "p1", "response": "a", "correct": True},
        {"prompt": "p1", "response": "b", "correct": False},
        {"prompt": "p1", "response": "b", "correct": False},  # duplicate response: counted once
        {"prompt": "p1", "response": "c", "correct": False},
        {"prompt": "p2", "response": "d", "correct": True},  # only correct: no pair
        {"prompt": "p3", "response": "e"},  # unlabelled: ignored
        {"prompt": "p3", "response": "f", "correct": False},
    ]
    pairs = preference_pairs(rows, template="Q: {prompt}", per_prompt=5, seed=1)
    assert sorted((p["prompt"], p["chosen"], p["rejected"]) for p in pairs) == [
        ("Q: p1", "a", "b"),
        ("Q: p1", "a", "c"),
    ]
    capped = preference_pairs(rows, per_prompt=1, seed=1)
    assert len(capped) == 1 and capped[0]["prompt"] == "p1" and capped[0]["chosen"] == "a"
    assert preference_pairs(rows, per_prompt=1, seed=1) == capped  # seeded
    assert {tuple(preference_pairs(rows, per_prompt=1, seed=s)[0].values()) for s in range(20)} == {
        ("p1", "a", "b"),
        ("p1", "a", "c"),
    }


def _mean_margin(scorer: RewardScorer, pairs: Sequence[dict[str, str]]) -> float:
    prompts = [p["prompt"] for p in pairs]
    chosen = scorer.score(prompts, [p["chosen"] for p in pairs])
    rejected = scorer.score(prompts, [p["rejected"] for p in pairs])
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


@pytest.fixture(scope="module")
def trained(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict]:
    """A reward model trained for a few steps on pairs from the hand-made set."""
    pairs = preference_pairs(_judged_set(), template=TEMPLATE, per_prompt=4, seed=0)
    cfg = JudgeConfig(kind="reward-model", reward_epochs=5, reward_learning_rate=3e-3, reward_batch_size=8)
    out = tmp_path_factory.mktemp("rm") / "reward-model"
    metrics = train_reward_model(pairs, str(tiny_dir), out, cfg, seed=0)
    return out, pairs, metrics


def test_training_raises_the_margin(tiny_dir: Path, trained: tuple[Path, list[dict], dict]) -> None:
    out, pairs, metrics = trained
    set_seed(0)  # the same fresh score head training started from
    before = _mean_margin(RewardScorer(*load_reward_model(str(tiny_dir))), pairs)
    after = _mean_margin(RewardScorer(*load_reward_model(str(out))), pairs)
    assert metrics["pairs"] == len(pairs) == 24 and metrics["steps"] == 15
    assert after > before + 0.05, (before, after)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["base"] == str(tiny_dir) and lineage["pairs"] == 24 and lineage["seed"] == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_judge_scores_in_row_order(trained: tuple[Path, list[dict], dict]) -> None:
    out, _, _ = trained
    rows = _judged_set()[:6]
    judge = make_reward_judge(JudgeConfig(kind="reward-model", reward_batch_size=4), str(out), template=TEMPLATE)
    assert isinstance(judge, RewardModelJudge) and judge.name == "reward-model"
    scores = judge.score(rows)
    assert len(scores) == 6 and all(0.0 <= s <= 1.0 for s in scores)
    assert judge.forward_passes == 2  # 6 rows in batches of 4
    one_by_one = [judge.score([row])[0] for row in rows]  # padding does not change a row's score
    assert scores == pytest.approx(one_by_one, abs=1e-5)
    assert judge.score(rows[::-1]) == pytest.approx(scores[::-1], abs=1e-5)


def test_reward_text_appends_eos_once() -> None:
    assert reward_text("Q:", " 3", "</s>") == "Q: 3</s>"
    assert reward_text("Q:", " 3</s>", "</s>") == "Q: 3</s>"
    assert reward_text("Q:", " 3", None) == "Q: 3"


class _Fixed:
    """A judge with fixed scores."""

    def __init__(self, name: str, scores: list[float]) -> None:
        self.name = name
        self.scores = scores
        self.forward_passes = 3

    def score(self, rows: Sequence[Record]) -> list[float]:
        return self.scores[: len(rows)]


def test_all_of_against_hand_computed_values() -> None:
    rows = [{"prompt": "p", "response": "r"}] * 4
    verifier = _Fixed("verifier", [1.0, 1.0, 0.0, 0.0])
    reward = _Fixed("reward-model", [0.7, 0.4, 0.9, 0.1])
    both = AllOfJudge([verifier, reward], [1.0, 0.5])
    assert both.name == "all-of(verifier+reward-model)"
    assert both.score(rows) == [1.0, 0.0, 0.0, 0.0]
    assert AllOfJudge([verifier, reward], [1.0, 0.4]).score(rows) == [1.0, 1.0, 0.0, 0.0]  # >= threshold keeps
    assert AllOfJudge([verifier, reward], [1.0, 0.5], mode="min").score(rows) == [0.7, 0.4, 0.0, 0.0]
    assert both.forward_passes == 6
    with pytest.raises(ValueError):
        AllOfJudge([verifier], [1.0, 0.5])


def test_all_of_with_the_verifier_and_a_trained_model(trained: tuple[Path, list[dict], dict]) -> None:
    out, _, _ = trained
    rows = [{**row, "answer": row["prompt"]} for row in _judged_set()[:4]]
    for row in rows:  # reference answer: a + b
        a, b = (int(x) for x in row["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
        row["answer"] = str(a + b)
    cfg = JudgeConfig(kind="all-of", reward_threshold=0.0)
    judge = make_reward_judge(cfg, str(out), template=TEMPLATE)
    assert judge.score(rows) == [1.0, 1.0, 0.0, 0.0]  # threshold 0: the verifier decides
    reward_only = make_reward_judge(JudgeConfig(kind="reward-model"), str(out), template=TEMPLATE).score(rows)
    minimum = make_reward_judge(cfg.model_copy(update={"all_of_mode": "min"}), str(out), template=TEMPLATE)
    assert minimum.score(rows) == pytest.approx([reward_only[0], reward_only[1], 0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("judge.reward_threshold=1.5", "judge.reward_threshold"),
        ("judge.kind=reward", "judge.kind"),
        ("judge.reward_batch_size=0", "judge.reward_batch_size"),
        ("judge.all_of_mode=or", "judge.all_of_mode"),
        ("judge.reward_epochs=0", "judge.reward_epochs"),
    ],
)
def test_bad_config_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_config_accepts_reward_kinds() -> None:
    config = load_config("tiny", ["judge.kind=all-of", "judge.reward_threshold=0.7", "judge.reward_model=/m"])
    assert config.judge.kind == "all-of" and config.judge.reward_threshold == 0.7


def _with_answers(rows: list[Record]) -> list[Record]:
    """The rows as generated rows of a round: `answer` (a + b) instead of `correct`."""
    out = []
    for row in rows:
        a, b = (int(x) for x in row["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
        out.append({k: v for k, v in row.items() if k != "correct"} | {"answer": str(a + b)})
    return out


def test_round_judge_trains_from_earlier_rounds_or_bootstraps(tiny_dir: Path, tmp_path: Path) -> None:
    from tasks.records import ModelRef, write_records
    from tasks.reward_model import round_reward_judge

    write_records(tmp_path / "round-01" / "judged.jsonl", _judged_set())
    policy = ModelRef(source="tiny", base=str(tiny_dir))
    rows = _with_answers(_judged_set()[:8])
    overrides = ["judge.kind=reward-model", "judge.reward_epochs=1", "judge.bootstrap=0"]
    config = load_config("tiny", overrides)
    out = tmp_path / "round-02" / "reward-model"
    judge, metrics, facts = round_reward_judge(config, rows, policy, str(tmp_path), out, round_index=2, seed=3)
    assert facts["from_rounds"] == 24 and facts["bootstrapped"] == 0
    assert metrics["reward_pairs"] == 24 and metrics["bank_size"] == 24
    assert (out / "lineage.json").exists() and len(judge.score(rows)) == 8
    # Round 1: no earlier rounds, so the round's own rows are labelled by the verifier.
    config = load_config("tiny", [*overrides[:2], "judge.bootstrap=8"])
    out = tmp_path / "round-01" / "reward-model"
    judge, metrics, facts = round_reward_judge(config, rows, policy, str(tmp_path), out, round_index=1, seed=3)
    assert facts["from_rounds"] == 0 and facts["bootstrapped"] == 8
    assert metrics["reward_pairs"] == 8  # 2 prompts, 2 correct x 2 wrong responses each, 4 pairs per prompt


@pytest.mark.slow  # MLflow run and CLI path, ~10 s
def test_judge_eval_accepts_the_reward_model(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from flows import judge_eval

    rows = []
    for a, b in [(i % 7 + 1, i % 5 + 2) for i in range(16)]:
        prompt = f"What is {a} + {b}? ({a}{b})"
        rows += [
            {"prompt": prompt, "response": f" The answer is {a + b}.", "correct": True},
            {"prompt": prompt, "response": f" The answer is {a + b + 1}.", "correct": False},
        ]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parser = argparse.ArgumentParser()
    judge_eval.configure(parser)
    out = tmp_path / "report"
    args = ["judge-eval", "model.source=local", f"model.name={tiny_dir}", f"tracking.output_dir={tmp_path / 'runs'}"]
    ns = parser.parse_args([*args, "--judges", "reward-model", "--labelled", str(labelled), "--out", str(out)])
    assert judge_eval.main(ns) == 0
    assert "reward-model" in capsys.readouterr().out
    figures = json.loads((out / "results.json").read_text())["results"]["reward-model"]
    assert 0.0 <= figures["auroc"] <= 1.0 and figures["forward_passes_per_sample"] > 0
    assert (out / "reward-model" / "lineage.json").exists()
    bad = parser.parse_args([*args, "--judges", "reward", "--labelled", str(labelled), "--out", str(out)])
    assert judge_eval.main(bad) == 2
