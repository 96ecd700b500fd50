"""Unit tests of tasks.curriculum and the curriculum's training draw (tasks.prompts.curriculum_prompts): the pass-rate
table, DAPO's dynamic sampling, and the level that rises once a level is mastered."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from configs.schema import CampaignConfig
from configs.schema_inputs import ARITHMETIC_LEVELS
from tasks.arithmetic import LEVELS, parse_question
from tasks.curriculum import dynamic_draw, level_pass_rate, next_level, pass_rate_table, passed
from tasks.prompts import curriculum_prompts


def _samples(prompt_id: str, outcomes: str, level: int | None = 1, **extra: object) -> list[dict]:
    """Judged samples of one prompt: "c" correct with working, "g" correct without working, "w" wrong."""
    return [
        {
            "id": prompt_id,
            "prompt": f"q {prompt_id}",
            "answer": "1",
            "sample": i,
            "correct": o in "cg",
            "work": o != "g",
            "level": level,
            **extra,
        }
        for i, o in enumerate(outcomes)
    ]


def test_pass_rate_table_counts_the_policys_verified_samples_per_prompt_and_round() -> None:
    round1 = _samples("a", "cwww") + _samples("b", "gggg") + _samples("c", "cccc")
    round1 += _samples("c", "c", source="rationalized")  # not the policy's own sample: not counted
    round1 += [{"id": "d", "prompt": "q d", "answer": None, "correct": False, "sample": 0}]  # no answer: no rate
    round2 = _samples("a", "ccwc", level=2)
    table = pass_rate_table([round1, round2], first_round=3)
    assert [(e["id"], e["round"], e["k"], e["passed"], e["level"]) for e in table] == [
        ("a", 3, 4, 1, 1),
        ("b", 3, 4, 0, 1),  # right answers without working are guesses: not passed under require_work
        ("c", 3, 4, 4, 1),
        ("a", 4, 4, 3, 2),
    ]
    assert passed({"correct": True}) and not passed({"correct": True, "work": False}) and not passed({})
    assert level_pass_rate(table) == (2, 0.75)
    assert level_pass_rate([]) == (None, None)


def test_the_level_rises_when_the_latest_round_masters_its_level_and_never_past_the_top() -> None:
    easy = pass_rate_table([_samples("a", "cccw") + _samples("b", "cccc")])  # 7/8 = 0.875 at level 1
    assert next_level(easy, start=1, promote_at=0.8, highest=4) == 2
    assert next_level(easy, start=1, promote_at=0.9, highest=4) == 1  # not yet
    hard = pass_rate_table([_samples("a", "cccc"), _samples("b", "cwww", level=2)])  # the latest round decides
    assert next_level(hard, start=1, promote_at=0.8, highest=4) == 2
    top = pass_rate_table([_samples("a", "cccc", level=4)])
    assert next_level(top, start=1, promote_at=0.8, highest=4) == 4
    assert next_level([], start=3, promote_at=0.8, highest=4) == 3


def test_dynamic_draw_keeps_informative_prompts_drops_saturated_ones_and_fills_with_fresh() -> None:
    history = _samples("mixed1", "cwww") + _samples("mixed2", "ccwc") + _samples("allpass", "cccc")
    history += _samples("allfail", "wwww") + _samples("guessed", "gggg") + _samples("other-level", "cwcw", level=2)
    table = pass_rate_table([history])
    fresh = [{"id": i, "prompt": f"q {i}", "answer": "2"} for i in ("allpass", "n1", "n2", "n3", "n4")]
    rows, counts = dynamic_draw(table, fresh, 4, seed=0, level=1)
    ids = [row["id"] for row in rows]
    assert ids[:2] == ["mixed1", "mixed2"]  # strictly between 0 and 1, at the current level, first
    assert set(ids[2:]) <= {"n1", "n2", "n3", "n4"} and len(ids) == 4  # a seen prompt is never "fresh"
    assert counts == {"reused": 2.0, "dropped": 3.0, "fresh": 2.0}  # allpass, allfail, guessed (0 passed)
    assert rows[0] == {"id": "mixed1", "prompt": "q mixed1", "answer": "1", "level": 1}
    assert dynamic_draw(table, fresh, 4, seed=0, level=1) == (rows, counts)  # seeded
    assert {row["id"] for row in dynamic_draw(table, fresh, 4, seed=0)[0]} >= {"mixed1", "mixed2", "other-level"}
    few, few_counts = dynamic_draw(table, fresh, 1, seed=3, level=1)  # fewer wanted than informative
    assert len(few) == 1 and few[0]["id"] in ("mixed1", "mixed2") and few_counts["fresh"] == 0.0


def _config(**prompts: object) -> CampaignConfig:
    return CampaignConfig.model_validate({"prompts": {"train_size": 6, "curriculum": True, "level": 1, **prompts}})


def test_curriculum_prompts_climb_a_level_and_draw_again_the_informative_prompts() -> None:
    config = _config(promote_level_at=0.5)
    first, metrics = curriculum_prompts(config, 1, [])
    assert len(first) == 6 and all(row["level"] == 1 for row in first)
    assert metrics["level"] == 1.0 and metrics["fresh"] == 6.0 and math.isnan(metrics["last_pass_rate"])
    assert all(parse_question(row["prompt"])[0] in LEVELS[0] for row in first)  # type: ignore[index]
    # round 1: the first prompt was half solved, the rest all solved: 0.625 >= 0.5, so round 2 draws at level 2
    judged = [
        {**row, "sample": i, "correct": (i < 2 if n == 0 else True), "work": True}
        for n, row in enumerate(first)
        for i in range(4)
    ]
    second, metrics = curriculum_prompts(config, 2, [judged])
    assert metrics["level"] == 2.0 and metrics["last_pass_rate"] == pytest.approx(22 / 24)
    assert metrics["reused"] == 0.0  # the half-solved prompt is at level 1, not the new level
    assert metrics["dropped"] == 5.0 and all(row["level"] == 2 for row in second)
    stay, metrics = curriculum_prompts(_config(promote_level_at=1.0), 2, [judged])
    assert metrics["level"] == 1.0 and metrics["reused"] == 1.0 and stay[0]["id"] == first[0]["id"]
    assert first[0]["id"] not in {row["id"] for row in stay[1:]} and len(stay) == 6


def test_a_curriculum_with_no_level_left_is_a_one_line_error_naming_the_fields() -> None:
    assert len(LEVELS) == ARITHMETIC_LEVELS
    with pytest.raises(ValidationError, match=r"prompts.curriculum has no level left: prompts.level=4"):
        _config(level=4)
    with pytest.raises(ValidationError, match=r"prompts.curriculum needs prompts.level \(1..3\)"):
        _config(level=None)
    with pytest.raises(ValidationError, match="prompts.level is for source 'arithmetic'"):
        CampaignConfig.model_validate({"prompts": {"source": "file", "train_path": "x.jsonl", "level": 2}})
