"""Unit tests of the judges' arithmetic: the Meta Ranking vote, calibration, error detection, the bank,
the cascade's routing, and the judge config's validation. Expected values are computed by hand."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config
from tasks.calibrate import auroc, calibrate_threshold, candidate_thresholds, error_detection, keep_stats, roc_points
from tasks.cascade import cascade_rows, routed_prompts
from tasks.judge_llm import rescale
from tasks.meta_ranking import comparison_prompts, vote
from tasks.reference_bank import (
    BankError,
    assign_references,
    bank_from_rounds,
    draw_panel,
    draw_references,
    load_bank_file,
    split_dev,
)

SCORES = [0.1, 0.4, 0.35, 0.8, 0.7]
LABELS = [False, False, True, True, True]


def test_vote_is_the_weighted_mean_of_label_aware_votes() -> None:
    # Against a correct reference P(same)=0.9 votes 0.9; against a wrong one P(same)=0.2 votes 1-0.2=0.8.
    assert vote([0.9, 0.2], [True, False]) == pytest.approx(0.85)
    assert vote([0.9, 0.2], [True, False], (1.0, 3.0)) == pytest.approx((0.9 + 3 * 0.8) / 4)
    assert vote([0.9, 0.2], [True, False], (0.0, 1.0)) == pytest.approx(0.8)
    assert vote([], []) == 0.5


def test_candidate_thresholds_are_the_lowest_score_then_midpoints() -> None:
    assert candidate_thresholds(SCORES) == pytest.approx([0.1, 0.225, 0.375, 0.55, 0.75])
    assert candidate_thresholds([]) == []


def test_keep_stats_by_hand() -> None:
    # t=0.225 keeps 0.35, 0.4, 0.7, 0.8: 3 of 4 correct, all 3 correct kept.
    precision, recall, f1 = keep_stats(SCORES, LABELS, 0.225)
    assert (precision, recall) == pytest.approx((0.75, 1.0))
    assert f1 == pytest.approx(2 * 0.75 / 1.75)


def test_calibrate_for_best_f1() -> None:
    # F1 by threshold: 0.1 -> .75, 0.225 -> .857, 0.375 -> .667, 0.55 -> .8, 0.75 -> .5
    assert calibrate_threshold(SCORES, LABELS, target="f1") == pytest.approx(0.225)


def test_calibrate_for_precision_takes_the_lowest_threshold_reaching_it() -> None:
    assert calibrate_threshold(SCORES, LABELS, target="precision", precision=0.9) == pytest.approx(0.55)
    assert calibrate_threshold(SCORES, LABELS, target="precision", precision=0.7) == pytest.approx(0.225)
    # Unreachable: the best precision (0.5 at t=0.2; 0 at t=0.5) wins.
    assert calibrate_threshold([0.2, 0.8], [True, False], target="precision", precision=0.9) == pytest.approx(0.2)


def test_calibrate_rejects_empty_or_mismatched_input() -> None:
    with pytest.raises(ValueError, match="no scores"):
        calibrate_threshold([], [])
    with pytest.raises(ValueError, match="labels"):
        calibrate_threshold([0.1], [True, False])


def test_error_detection_and_auroc_by_hand() -> None:
    # Flagged below 0.55: 0.1 (wrong), 0.4 (wrong), 0.35 (right): precision 2/3, recall 2/2.
    found = error_detection(SCORES, LABELS, 0.55)
    assert found["precision"] == pytest.approx(2 / 3)
    assert found["recall"] == 1.0
    assert found["f1"] == pytest.approx(0.8)
    assert found["flagged_share"] == pytest.approx(0.6)
    # Correct [0.35, 0.8, 0.7] against wrong [0.1, 0.4]: 5 of 6 pairs ordered right.
    assert auroc(SCORES, LABELS) == pytest.approx(5 / 6)
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert math.isnan(auroc([0.5], [True]))


def test_roc_points_run_from_origin_to_one() -> None:
    fpr, tpr = roc_points(SCORES, LABELS)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)


def test_rescale_puts_the_calibrated_threshold_on_the_selection_threshold() -> None:
    assert rescale(0.25, 0.25, 0.5) == 0.5
    assert rescale(0.625, 0.25, 0.5) == pytest.approx(0.75)
    assert rescale(1.0, 0.25, 0.5) == 1.0
    assert rescale(0.0, 0.25, 0.5) == 0.0
    assert rescale(0.2499999999, 0.25, 0.5) < 0.5
    assert rescale(0.3, 0.0, 0.5) >= 0.5


def _bank(correct: int, wrong: int) -> list[dict]:
    return [{"prompt": f"q{i}", "response": "r", "correct": i < correct} for i in range(correct + wrong)]


def test_references_are_balanced_seeded_and_never_the_targets_prompt() -> None:
    bank = _bank(6, 6)
    picked = draw_references(bank, 4, random.Random(0))
    assert sum(bank[i]["correct"] for i in picked) == 2
    odd = draw_references(bank, 5, random.Random(1))
    assert sum(bank[i]["correct"] for i in odd) in (2, 3) and len(odd) == 5
    assert 0 not in draw_references(bank, 11, random.Random(0), exclude_prompt="q0")
    targets = [{"prompt": "q3"}, {"prompt": "x"}]
    assert assign_references(targets, bank, 4, seed=7) == assign_references(targets, bank, 4, seed=7)


def test_references_fill_a_short_label_from_the_other() -> None:
    bank = _bank(1, 6)
    picked = draw_references(bank, 4, random.Random(0))
    assert sum(bank[i]["correct"] for i in picked) == 1 and len(picked) == 4
    assert len(draw_references(_bank(1, 1), 5, random.Random(0))) == 2


def test_panel_and_dev_split() -> None:
    bank = _bank(10, 10)
    panel = draw_panel(bank, 6, seed=0)
    assert len(panel) == 6 and sum(r["correct"] for r in panel) == 3
    assert draw_panel(bank, 0, seed=0) == bank
    references, dev = split_dev(bank, 8, seed=0)
    assert len(dev) == 8 and len(references) == 12
    assert not {r["prompt"] for r in dev} & {r["prompt"] for r in references}
    assert len(split_dev(bank, 100, seed=0)[1]) == 10  # at most half


def test_comparison_prompts_share_the_right_prefix() -> None:
    ref = {"prompt": "1+1?", "response": " 2", "correct": True}
    a, b = {"prompt": "2+2?", "response": " 4"}, {"prompt": "3+3?", "response": " 7"}
    template = "Q: {prompt}\nA:"
    (pa, ta), (pb, tb) = (comparison_prompts(t, ref, template, swapped=False) for t in (a, b))
    assert pa == pb and "Q: 1+1?\nA: 2\nThis answer is correct." in pa
    assert ta.startswith("Q: 2+2?\nA: 4") and ta.endswith("Is this answer correct too? Reply yes or no:")
    wrong = {**ref, "correct": False}
    (sa, _), (sb, tail) = (comparison_prompts(a, r, template, swapped=True) for r in (ref, wrong))
    assert sa == sb and "2+2?" in sa and "This answer is wrong." in tail


def test_bank_from_rounds_newest_first_labelled_unique(tmp_path: Path) -> None:
    for index, rows in ((1, [("a", "1", True), ("b", "2", False)]), (2, [("c", "3", True), ("a", "1", True)])):
        folder = tmp_path / f"round-{index:02d}"
        folder.mkdir()
        lines = [{"prompt": p, "response": r, "correct": c} for p, r, c in rows] + [{"prompt": "n", "response": "x"}]
        (folder / "judged.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    bank = bank_from_rounds(tmp_path, before_round=3, limit=10)
    assert [r["prompt"] for r in bank] == ["c", "a", "b"]
    assert [r["prompt"] for r in bank_from_rounds(tmp_path, before_round=3, limit=2)] == ["c", "a"]
    assert bank_from_rounds(tmp_path, before_round=1, limit=10) == []


def test_bank_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_text('{"prompt": "a", "response": "b", "correct": true}\n{"prompt": "a", "response": "b"}\n')
    with pytest.raises(BankError, match=r"bank.jsonl:2: field 'correct'"):
        load_bank_file(path)
    with pytest.raises(BankError, match="not found"):
        load_bank_file(tmp_path / "missing.jsonl")


class _EchoEngine:
    def sample(self, prompts, **kwargs):  # noqa: ANN001, ANN003, ANN201 - test double
        assert kwargs["temperature"] == 0.0 and kwargs["n"] == 1
        return [[" The answer is 5."] for _ in prompts]


def test_cascade_routes_prompts_whose_best_response_is_below_threshold() -> None:
    rows = [
        {"id": "p1", "prompt": "2+3?", "answer": "5", "sample": 0, "response": "x", "score": 0.2},
        {"id": "p1", "prompt": "2+3?", "answer": "5", "sample": 1, "response": "y", "score": 0.4},
        {"id": "p2", "prompt": "1+1?", "answer": "2", "sample": 0, "response": "z", "score": 0.9},
    ]
    assert routed_prompts(rows, 0.5) == ["p1"]
    extra = cascade_rows(rows, ["p1"], _EchoEngine(), template="{prompt}", max_new_tokens=8, stop=["\n"], seed=0)
    assert extra == [
        {
            "id": "p1",
            "prompt": "2+3?",
            "answer": "5",
            "sample": 2,
            "response": " The answer is 5.",
            "score": 1.0,
            "source": "cascade",
            "correct": True,
        }
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("judge.kind=oracle", "judge.kind"),
        ("judge.references=0", "judge.references"),
        ("judge.bank=file", "judge.bank_path"),
        ("judge.panel=3", "judge.panel"),
        ("judge.target_precision=1.5", "judge.target_precision"),
        ("judge.calibrate=recall", "judge.calibrate"),
        ("judge.weight_wrong=-1", "judge.weight_wrong"),
        ("judge.model.source=cloud", "judge.model.source"),
        ("judge.cascade.max_new_tokens=8", "judge.cascade.model"),
    ],
)
def test_bad_judge_values_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny-meta-ranking", [override])


def test_meta_ranking_configs_validate() -> None:
    config = load_config("tiny-meta-ranking")
    assert config.judge.kind == "meta-ranking" and config.judge.model is None
    cascade = load_config("tiny", ["judge.cascade.model.source=tiny", "judge.kind=pointwise"])
    assert cascade.judge.cascade is not None and cascade.judge.cascade.model.source == "tiny"
    assert load_config("judge-eval").model.source == "packaged-gemma"
