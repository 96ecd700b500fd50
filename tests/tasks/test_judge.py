"""Unit tests of the judge step (tasks.judge): the round's judge summary, and the working a kept row must show."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from configs.schema import DEFAULT_ANSWER_PATTERN, CampaignConfig, JudgeConfig
from models.loading import load_policy
from models.option_scorer import OptionScorer
from tasks.judge import cascade_summary, judge_quality, judge_summary, judge_with_llm, require_work
from tasks.judging.base import judge_records
from tasks.judging.calibration import rescale
from tasks.judging.lm import OPTIONS
from tasks.judging.verifier import VerifierJudge
from tasks.select import select


def test_judge_summary() -> None:
    judged = [
        {"id": "p1", "score": 1.0, "correct": True},
        {"id": "p1", "score": 0.2, "correct": False},
        {"id": "p2", "score": 0.5, "correct": False},
        {"id": "p2", "score": 0.4, "correct": False},
        {"id": "p3", "score": 0.9},  # no answer: counts for accept_rate and mean_score only
    ]
    summary = judge_summary(judged, threshold=0.5)
    assert summary == {
        "accept_rate": pytest.approx(3 / 5),
        "mean_score": pytest.approx(3.0 / 5),
        "accuracy": pytest.approx(1 / 4),
        "pass_at_k": pytest.approx(1 / 2),
        "prompts": 3.0,
    }


def test_judge_summary_without_answers_or_rows() -> None:
    summary = judge_summary([{"id": "a", "score": 0.0}], threshold=0.5)
    assert summary["accept_rate"] == 0.0
    assert math.isnan(summary["accuracy"]) and math.isnan(summary["pass_at_k"])
    empty = judge_summary([], threshold=0.5)
    assert empty["prompts"] == 0.0 and math.isnan(empty["accept_rate"]) and math.isnan(empty["mean_score"])


def test_an_lm_judge_is_calibrated_on_dev_rows_and_mapped_onto_the_selection_threshold(tiny_dir: Path) -> None:
    scorer = OptionScorer(*load_policy(str(tiny_dir)), OPTIONS, batch_size=8)
    bank = [
        {"prompt": f"What is {i} plus 1?", "response": f" The answer is {i + 1 + i % 2}.", "correct": i % 2 == 0}
        for i in range(12)
    ]
    rows = [
        {
            "id": f"p{i}",
            "sample": 0,
            "prompt": f"What is {i} plus 2?",
            "response": f" The answer is {i + 2 + i % 3}.",
            "answer": str(i + 2),
        }
        for i in range(6)
    ] + [{"id": "free", "sample": 0, "prompt": "Say hi.", "response": " hi", "answer": None}]
    cfg = JudgeConfig(kind="meta-ranking", references=2, panel=4, dev_size=4)
    result = judge_with_llm(rows, cfg, scorer, bank, template="Q: {prompt}\nA:", select_threshold=0.5, seed=1)
    m = result.metrics
    assert (m["bank_size"], m["dev_rows"], m["panel_size"], m["bank_correct_share"]) == (12.0, 4.0, 4.0, 0.5)
    assert [r["id"] for r in result.rows] == [r["id"] for r in rows]
    for row in result.rows:  # every score is the raw one mapped by the calibrated threshold
        assert row["score"] == rescale(row["raw_score"], m["threshold"], 0.5)
        assert (row["score"] >= 0.5) == (row["raw_score"] >= m["threshold"])
    assert [r.get("correct") for r in result.rows] == [True, False, False, True, False, False, None]
    assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["dev_auroc"] <= 1.0 and m["forward_passes"] > 0
    logged = result.logs["judge-bank.jsonl"]
    # Meta Ranking: half the dev rows (by prompt) measure the references' weights, the rest the threshold.
    assert [r["role"] for r in logged] == ["panel"] * 4 + ["calibration"] * 2 + ["dev"] * 2
    assert m["calibration_rows"] == 2.0 and 0.0 <= m["reference_weight_mean"] <= 1.0
    assert len(result.logs["judge-references.jsonl"]) == 7
    no_dev = judge_with_llm(
        rows,
        cfg.model_copy(update={"dev_size": 0, "kind": "pointwise"}),
        scorer,
        bank,
        template="Q: {prompt}\nA:",
        select_threshold=0.5,
        seed=1,
    )
    assert no_dev.metrics["threshold"] == 0.5 and "judge-references.jsonl" not in no_dev.logs  # pointwise: no panel log
    assert all(r["score"] == rescale(r["raw_score"], 0.5, 0.5) for r in no_dev.rows)


def test_cascade_rows_stay_out_of_the_judge_summary_and_have_their_own() -> None:
    policy = [
        {"id": "p1", "score": 0.2, "correct": False},
        {"id": "p2", "score": 0.9, "correct": True},
    ]
    cascade = [{"id": "p1", "score": 1.0, "correct": True, "source": "cascade"}]
    assert judge_summary(policy + cascade, threshold=0.5) == judge_summary(policy, threshold=0.5)
    assert judge_summary(policy + cascade, threshold=0.5)["pass_at_k"] == pytest.approx(1 / 2)  # not 2/2
    assert cascade_summary(policy + cascade, routed=1) == {
        "routed": 1.0,
        "routed_share": 0.5,
        "rows": 1.0,
        "accuracy": 1.0,
    }


def test_judge_quality_never_counts_rows_the_judge_was_fitted_on() -> None:
    def row(prompt: str, response: str, score: float, correct: bool, **extra: object) -> dict:
        return {"prompt": prompt, "response": response, "score": score, "correct": correct, **extra}

    rows = [
        row("a", "r1", 0.9, True),  # a dev row that fitted the threshold: a perfect score, left out
        row("a", "r2", 0.1, False),  # a bootstrapped reference: left out
        row("b", "r3", 0.8, False),  # counted: a wrong row the judge trusts
        row("c", "r4", 0.3, True),  # counted: a right row the judge flags
        row("d", "r5", 0.7, True),  # counted
        row("e", "r6", 0.2, True, source="cascade"),  # the stronger model's answer: left out
        {"prompt": "f", "response": "r7", "score": 0.4},  # no answer: nothing to measure
    ]
    fitted = [{"prompt": "a", "response": "r1", "correct": True}, {"prompt": "a", "response": "r2", "correct": False}]
    quality = judge_quality(rows, fitted, threshold=0.5)
    # counted: (0.8, wrong), (0.3, right), (0.7, right). AUROC: right beats wrong in 0 of 2 pairs -> 0.0.
    # flagged (< 0.5): only r4, which is right -> precision 0, recall 0 (one wrong row, unflagged).
    assert quality == {
        "quality_rows": 3.0,
        "auroc": 0.0,
        "error_precision": 0.0,
        "error_recall": 0.0,
        "error_f1": 0.0,
        "error_flagged_share": pytest.approx(1 / 3),
    }
    leaky = judge_quality(rows, [], threshold=0.5)  # what the old metric counted (cascade aside)
    assert leaky["quality_rows"] == 5.0 and leaky["auroc"] > quality["auroc"]
    assert judge_quality(rows[:2], fitted, threshold=0.5) == {"quality_rows": 0.0}


def test_an_lm_judges_reported_quality_leaves_out_its_bank(tiny_dir: Path) -> None:
    scorer = OptionScorer(*load_policy(str(tiny_dir)), OPTIONS, batch_size=8)
    rows = [
        {"id": f"p{i}", "sample": 0, "prompt": f"What is {i} plus 1?", "response": f" The answer is {i + 1 + i % 2}."}
        | {"answer": str(i + 1)}
        for i in range(12)
    ]
    bank = [
        {"prompt": r["prompt"], "response": r["response"], "correct": r["response"].endswith(f"{r['answer']}.")}
        for r in rows[:8]
    ]  # this round's own samples, bootstrapped into the bank
    cfg = JudgeConfig(kind="pointwise", dev_size=4)
    result = judge_with_llm(rows, cfg, scorer, bank, template="Q: {prompt}\nA:", select_threshold=0.5, seed=1)
    assert result.metrics["quality_rows"] == 4.0  # only the 4 rows outside the bank
    expected = judge_quality(result.rows[8:], [], result.metrics["threshold"], score_key="raw_score")
    assert result.metrics["auroc"] == expected["auroc"] or math.isnan(expected["auroc"])


def test_require_work_zeroes_bare_guesses_and_wrong_steps_and_reports_the_work_rate() -> None:
    rows = [
        {"id": "p", "prompt": "What is 3 plus 4?", "answer": "7", "response": " 3 + 4 = 7. The answer is 7."},
        {"id": "p", "prompt": "What is 3 plus 4?", "answer": "7", "response": " The answer is 7."},  # a bare guess
        {
            "id": "q",
            "prompt": "What is 2 times 3 plus 1?",
            "answer": "7",
            "response": " 2 * 3 = 5. 5 + 2 = 7. The answer is 7.",
        },
        {
            "id": "q",
            "prompt": "What is 2 times 3 plus 1?",
            "answer": "7",
            "response": " 2 * 3 = 6. 6 + 2 = 8. The answer is 8.",
        },
    ]
    judged = judge_records(rows, VerifierJudge())
    assert [row["score"] for row in judged] == [1.0, 1.0, 1.0, 0.0]  # the answer check alone credits three
    worked, metrics = require_work(judged, DEFAULT_ANSWER_PATTERN)
    assert [row["score"] for row in worked] == [1.0, 0.0, 0.0, 0.0]  # only the first is kept for training
    assert [row["work"] for row in worked] == [True, False, False, True]  # the last shows right work, wrong answer
    assert [row["correct"] for row in worked] == [True, True, True, False]  # `correct` stays the strict answer check
    assert metrics == {"work_rate": 0.5, "correct_without_work": pytest.approx(2 / 3)}
    assert [row["id"] for row in select(worked, threshold=0.5, best_of_k=False, max_per_prompt=2, dedupe=True)] == ["p"]


def test_require_work_is_on_by_default_for_the_builtin_task_only() -> None:
    assert CampaignConfig().requires_work
    files = {"source": "file", "train_path": "train.jsonl"}
    assert not CampaignConfig.model_validate({"prompts": files}).requires_work
    assert CampaignConfig.model_validate({"prompts": files, "judge": {"require_work": True}}).requires_work
    assert not CampaignConfig.model_validate({"judge": {"require_work": False}}).requires_work
