"""Tests of tasks.judging.meta_ranking that fail on a broken judge: the vote by hand, and a scripted ranker.

The scripted scorer stands in for the judge LM, the one place a fake is right: its preferences are known
(it ranks the pair holding the right sum above the other, with seeded noise and a pull towards answer A),
so what is tested is Meta Ranking's aggregation: outcomes meeting labels, measured weights, swap.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config
from configs.schema import JudgeConfig
from models.option_scorer import PrefixGroup
from tasks.judging.calibration import auroc, calibrate_threshold, keep_stats
from tasks.judging.meta_ranking import (
    FIRST,
    RANK_OPTIONS,
    SECOND,
    MetaRankingJudge,
    evidence,
    meta_vote,
    ranking_precision,
    ranking_prompt,
)
from tasks.judging.reference_bank import BankError, build_bank, check_bank
from tasks.records import write_records

TEMPLATE = "Question: {prompt}\nAnswer:"
PAIR = re.compile(r"What is (\d+) plus (\d+)\?\nAnswer: The answer is (\d+)\.")


def _right(section: str) -> bool:
    a, b, said = (int(x) for x in PAIR.search(section).groups())  # type: ignore[union-attr]
    return a + b == said


class ScriptedRanker:
    """P(" A") = 0.5 + 0.3 * (A right - B right) + `bias`, plus seeded noise of up to +-`noise` (`flip`: 1 - that)."""

    options = RANK_OPTIONS

    def __init__(self, *, bias: float = 0.1, noise: float = 0.2, strength: float = 0.3, flip: bool = False) -> None:
        self.bias, self.noise, self.strength, self.flip = bias, noise, strength, flip
        self.forward_passes = 0
        self.rng = random.Random(0)

    def score(self, groups: Sequence[PrefixGroup], *, reuse_cache: bool = True, progress: object = None) -> list:
        self.forward_passes += len(groups)
        out = []
        for group in groups:
            probs = []
            for tail in group.tails:
                text = group.prefix + tail
                a, b = text.split(FIRST, 1)[1].split(SECOND, 1)
                p = 0.5 + self.strength * (_right(a) - _right(b)) + self.bias
                p = min(1.0, max(0.0, p + self.rng.uniform(-self.noise, self.noise)))
                probs.append(1.0 - p if self.flip else p)
            out.append(probs)
        return out


def _rows(count: int, start: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(start, start + count):
        a, b = i % 9 + 1, i // 9 % 9 + 1
        correct = rng.random() < 0.5
        said = a + b if correct else a + b + rng.choice([-2, -1, 1, 3])
        rows.append({"prompt": f"What is {a} plus {b}?", "response": f" The answer is {said}.", "correct": correct})
    return rows


BANK = [row for row in _rows(40, 0, 1)][:10]
CALIBRATION = _rows(20, 100, 2)
TEST = _rows(60, 200, 3)


def test_evidence_and_vote_by_hand() -> None:
    # Above a correct reference: +1 strong; below it: -weak; below a wrong one: -1; above it: +weak.
    assert evidence(1.0, True, 0.5) == 1.0 and evidence(0.0, True, 0.5) == -0.5
    assert evidence(0.0, False, 0.5) == -1.0 and evidence(1.0, False, 0.5) == 0.5
    assert evidence(0.8, True, 0.5) == pytest.approx(0.8 - 0.2 * 0.5)
    # Two references: weights 0.9 and 0.3, evidence 0.8 - 0.1 = 0.7 and 0.05 - 0.9 = -0.85.
    assert meta_vote([0.8, 0.1], [True, False], [0.9, 0.3]) == pytest.approx(0.5 + 0.5 * (0.63 - 0.255) / 1.2)
    assert meta_vote([], [], []) == 0.5 and meta_vote([0.9], [True], [0.0]) == 0.5


def test_ranking_precision_counts_only_pairs_whose_labels_differ() -> None:
    # A correct reference: wrong targets should rank below (1 - p), correct targets tie with it (skipped).
    assert ranking_precision([0.2, 0.4, 0.9], [False, False, True], True) == pytest.approx((0.8 + 0.6) / 2)
    # A wrong reference: correct targets should rank above (p).
    assert ranking_precision([0.7, 0.1, 0.5], [True, True, False], False) == pytest.approx((0.7 + 0.1) / 2)
    assert ranking_precision([0.9], [True], True) == 0.5  # nothing informative: chance


def test_ranking_prompts_share_the_first_pair_and_never_show_a_label() -> None:
    ref, target = BANK[0], TEST[0]
    prefix, tail = ranking_prompt(ref, target, TEMPLATE)
    other_prefix, _ = ranking_prompt(ref, TEST[1], TEMPLATE)
    assert prefix == other_prefix and prefix.endswith(ref["response"].strip() + "\n\n")
    assert tail.startswith(SECOND + TEMPLATE.format(prompt=target["prompt"]))
    assert "This answer is" not in prefix + tail and "wrong" not in prefix + tail


def test_meta_ranking_separates_right_from_wrong_and_an_inverted_vote_does_not() -> None:
    labels = [row["correct"] for row in TEST]
    judge = MetaRankingJudge(ScriptedRanker(), BANK, template=TEMPLATE, references=5, swap=True, seed=0)  # type: ignore[arg-type]
    weights = judge.calibrate(CALIBRATION)
    assert all(w > 0.7 for w in weights)  # the scripted ranker orders mixed pairs right ~0.8 of the time
    assert auroc(judge.score(TEST), labels) > 0.9
    # The outcome inverted (the options read backwards, so "above" means below): the vote ranks wrong first.
    inverted = MetaRankingJudge(ScriptedRanker(flip=True), BANK, template=TEMPLATE, references=5, swap=True)  # type: ignore[arg-type]
    assert auroc(inverted.score(TEST), labels) < 0.5
    # The measured weights show it: every reference now ranks mixed pairs the wrong way round.
    assert all(w < 0.3 for w in inverted.calibrate(CALIBRATION))


def test_swapping_cancels_a_pure_position_bias() -> None:
    biased = ScriptedRanker(bias=0.4, noise=0.0, strength=0.0)  # always P(A) = 0.9, whatever the pairs
    one_order = MetaRankingJudge(biased, BANK, template=TEMPLATE, references=4)  # type: ignore[arg-type]
    one_order.score(TEST[:3])
    assert all(p == pytest.approx(0.1) for probs in one_order.comparisons for p in probs)
    both = MetaRankingJudge(biased, BANK, template=TEMPLATE, references=4, swap=True)  # type: ignore[arg-type]
    assert both.score(TEST[:3]) == pytest.approx([0.5 + 0.5 * 0.0] * 3, abs=0.2)
    assert all(p == pytest.approx(0.5) for probs in both.comparisons for p in probs)


def test_calibration_on_all_wrong_rows_rejects_everything() -> None:
    scores = [0.1, 0.7, 0.95, 1.0]
    threshold = calibrate_threshold(scores, [False] * 4)
    assert threshold > 1.0 and keep_stats(scores, [False] * 4, threshold)[0] == 0.0
    assert not any(s >= threshold for s in scores)
    assert calibrate_threshold(scores, [False] * 4, target="precision") > 1.0
    assert calibrate_threshold(scores, [True] * 4) == 0.1  # all right: keep all


def test_a_bank_meta_ranking_cannot_use_is_refused_in_one_line() -> None:
    with pytest.raises(BankError, match=r"^bank\.jsonl: holds 3 labelled rows, fewer than judge.references \(5\)"):
        check_bank(BANK[:3], 5, "bank.jsonl")
    only_right = [{**row, "correct": True} for row in BANK]
    with pytest.raises(BankError, match=r"^bank\.jsonl: field 'correct': every row is correct") as error:
        check_bank(only_right, 5, "bank.jsonl")
    assert "\n" not in str(error.value)
    check_bank(BANK, 5, "bank.jsonl")  # both labels, enough rows
    with pytest.raises(ValueError, match="judge.bank"):
        MetaRankingJudge(ScriptedRanker(), [], template=TEMPLATE)  # type: ignore[arg-type]


def test_a_bank_smaller_than_judge_references_is_a_config_error() -> None:
    for override, message in [
        ("judge.bank_size=3", r"judge\.bank_size \(3\) must be at least judge\.references \(5\)"),
        (
            "judge.bootstrap=4",
            r"judge\.bootstrap \(4\) must be at least judge\.references \(5\) with judge\.bank=rounds",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config("tiny", ["judge.kind=meta-ranking", override])
        load_config("tiny", ["judge.kind=pointwise", override])  # no references to vote: its bank only calibrates


def test_a_round_bank_too_small_or_with_one_label_is_refused_naming_judge_bank(tmp_path: Path) -> None:
    earlier = [write_records(tmp_path / "judged.jsonl", [{**row, "correct": True} for row in BANK[:6]])]
    cfg = JudgeConfig(kind="meta-ranking", bootstrap=5)
    source = r"^judge\.bank=rounds \(6 rows from earlier rounds, 0 of this round's samples\)"
    with pytest.raises(BankError, match=source + r": field 'correct': every row is correct \(6 of 6\); Meta Ranking"):
        build_bank(cfg, [], earlier, seed=0)  # the earlier round got every sample right
    answered = [{**row, "answer": "5"} for row in TEST[:3]]  # round 1: three of its own samples to label
    too_few = r"^judge\.bank=rounds \(0 rows from earlier rounds, 3 of this round's samples\): holds 3 labelled rows"
    with pytest.raises(BankError, match=too_few):
        build_bank(cfg, answered, [], seed=0)
    assert len(build_bank(cfg.model_copy(update={"kind": "pointwise"}), answered, [], seed=0)[0]) == 3  # calibrates
    assert len(build_bank(cfg, [], earlier + [write_records(tmp_path / "r2.jsonl", BANK[6:])], seed=0)[0]) >= 5
