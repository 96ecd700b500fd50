"""Evaluation helpers against hand-computed values: the Wilson interval, strict scoring with its lenient and
format diagnostics, greedy evaluation, and the promotion rule."""

from collections.abc import Sequence

import pytest

from configs.schema import CampaignConfig
from tasks.evaluate import (
    answer_greedy,
    evaluate_greedy,
    greedy_rows,
    resample_failed_working,
    score_responses,
    wilson_interval,
)
from tasks.gate import should_promote
from tasks.prompts import item_problem


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.5, n = 100: centre 0.5, half-width 1.96 * sqrt(0.0025 + 0.96^2/40000) / 1.0384 = 0.0951
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("candidate", "incumbent", "margin", "expected"),
    [(0.50, 0.50, 0.0, True), (0.49, 0.50, 0.0, False), (0.49, 0.50, 0.02, True), (0.47, 0.50, 0.02, False)],
)
def test_promotion_gate(candidate: float, incumbent: float, margin: float, expected: bool) -> None:
    assert should_promote(candidate, incumbent, margin) is expected


def test_wilson_interval_is_scipys() -> None:
    # 3 of 7: Wilson 95% by hand, centre (3/7 + 1.96^2/14) / (1 + 1.96^2/7) = 0.4539, half-width 0.2957
    low, high = wilson_interval(3, 7)
    assert low == pytest.approx(0.1582, abs=1e-4) and high == pytest.approx(0.7495, abs=1e-4)


def test_score_responses_is_strict_and_keeps_the_lenient_rate_and_format_rate() -> None:
    rows = [
        {"id": "a", "response": " 2 + 3 = 5. The answer is 5.", "answer": "5"},  # right, in form
        {"id": "b", "response": "The answer is 6.", "answer": "5"},  # wrong, in form
        {"id": "c", "response": " 2 + 3 = 5", "answer": "5"},  # right working, not in form: lenient only
        {"id": "d", "response": "The answer is 5 or 6.", "answer": "5"},  # two candidates: lenient only
        {"id": "e", "response": "Ana has 2 pens and gets 5", "answer": "5"},  # an echo: lenient only
    ]
    scored, metrics = score_responses(rows)
    assert [r["score"] for r in scored] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert [r["id"] for r in scored] == ["a", "b", "c", "d", "e"]
    assert metrics["accuracy"] == pytest.approx(1 / 5)
    assert metrics["lenient_accuracy"] == pytest.approx(4 / 5)
    assert metrics["format_rate"] == pytest.approx(2 / 5)
    assert metrics["items"] == 5
    assert (metrics["ci_low"], metrics["ci_high"]) == pytest.approx(wilson_interval(1, 5))
    _, custom = score_responses(rows, answer_pattern=r"= (\d+)")
    assert custom["accuracy"] == pytest.approx(2 / 5) and custom["format_rate"] == pytest.approx(2 / 5)
    assert metrics["problems"] == 5  # no problem given: each row its own


def test_score_responses_stamps_the_problem_and_counts_problems() -> None:
    rows = [
        {"id": f"r{i}", "prompt": p, "response": "The answer is 8.", "answer": "8"}
        for i, p in enumerate(["What is 3 plus 5?", "What is 5 plus 3?", "What is 4 plus 4?"])
    ]
    config = CampaignConfig.model_validate({"prompts": {"source": "arithmetic"}})
    scored, metrics = score_responses(rows, problem_of=item_problem(config))
    assert [row["problem"] for row in scored] == ["add:3:5", "add:3:5", "add:4:4"]
    assert metrics["problems"] == 2 and metrics["items"] == 3
    assert (metrics["ci_low"], metrics["ci_high"]) == pytest.approx(wilson_interval(2, 2))  # all right: 2 problems
    with pytest.raises(ValueError, match="nothing to score"):
        score_responses([])


class CannedEngine:
    """A sampling engine that answers each prompt with a fixed text (the `SamplingEngine` seam)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[dict] = []

    def sample(self, prompts: Sequence[str], **options: object) -> list[list[str]]:
        self.calls.append(options)
        return [[self.answers[p]] * int(options["n"]) for p in prompts]  # type: ignore[call-overload]


def test_evaluate_greedy_samples_greedily_and_scores_strictly() -> None:
    rows = [{"id": "1", "prompt": "1+1?", "answer": "2"}, {"id": "2", "prompt": "2+2?", "answer": "4"}]
    engine = CannedEngine({"Q: 1+1?\nA:": " The answer is 2.", "Q: 2+2?\nA:": " 2 + 2"})
    scored, metrics = evaluate_greedy(
        engine, rows, template="Q: {prompt}\nA:", max_new_tokens=8, stop=["\n"], batch_size=4, prefix="P "
    )
    options = engine.calls[0]
    assert options["temperature"] == 0.0 and options["n"] == 1 and options["prefix"] == "P "
    assert [r["response"] for r in scored] == [" The answer is 2.", " 2 + 2"]
    assert (metrics["accuracy"], metrics["lenient_accuracy"], metrics["format_rate"]) == (0.5, 0.5, 0.5)


class DrawingEngine:
    """Greedy answers from `greedy`, samples from `samples` (per prompt, in order); records each call."""

    def __init__(self, greedy: dict[str, str], samples: dict[str, list[str]]) -> None:
        self.greedy, self.samples = greedy, samples
        self.calls: list[tuple[list[str], dict]] = []

    def sample(self, prompts: Sequence[str], **options: object) -> list[list[str]]:
        self.calls.append((list(prompts), options))
        if options["temperature"] == 0.0:
            return [[self.greedy[p]] for p in prompts]
        return [self.samples[p][: int(options["n"])] for p in prompts]  # type: ignore[call-overload]


def test_resampling_replaces_only_failed_working_by_the_first_sample_whose_working_holds() -> None:
    rows = [
        {"id": "a", "prompt": "39+35?", "answer": "74"},  # a dropped carry: resampled, a sample's working holds
        {"id": "b", "prompt": "2+2?", "answer": "4"},  # working holds: kept as it is, never resampled
        {"id": "c", "prompt": "9+9?", "answer": "18"},  # no sample's working holds: the greedy answer stays
        {"id": "d", "prompt": "5+6?", "answer": "11"},  # a bare guess, right: resampled to working that holds
    ]
    greedy = {
        "Q: 39+35?\nA:": " 39 + 35 = 64. The answer is 64.",
        "Q: 2+2?\nA:": " 2 + 2 = 4. The answer is 4.",
        "Q: 9+9?\nA:": " 9 + 9 = 17. The answer is 17.",
        "Q: 5+6?\nA:": " The answer is 11.",
    }
    samples = {
        "Q: 39+35?\nA:": [" 39 + 35 = 63. The answer is 63.", " 39 + 35 = 74. The answer is 74.", " x"],
        "Q: 9+9?\nA:": [" 9 + 9 = 19. The answer is 19.", " The answer is 18.", " 9 + 9 = 18. The answer is 17."],
        # The check reads no reference: working that holds for a wrong question still replaces the guess.
        "Q: 5+6?\nA:": [" 5 + 5 = 10. The answer is 10.", " 5 + 6 = 11. The answer is 11.", " y"],
    }
    engine = DrawingEngine(greedy, samples)
    options = {"template": "Q: {prompt}\nA:", "max_new_tokens": 8, "stop": ["\n"], "batch_size": 4}
    answered = answer_greedy(engine, rows, **options)
    out, counts = resample_failed_working(engine, answered, k=3, temperature=0.8, top_p=0.95, seed=7, **options)
    prompts, sampled = engine.calls[1]
    assert prompts == ["Q: 39+35?\nA:", "Q: 9+9?\nA:", "Q: 5+6?\nA:"]  # only the failed working
    assert (sampled["n"], sampled["temperature"], sampled["top_p"], sampled["seed"]) == (3, 0.8, 0.95, 7)
    assert sampled["prompt_ids"] == ["a", "c", "d"]  # seeded by the row, not by its batch mates
    assert [row["response"] for row in out] == [
        " 39 + 35 = 74. The answer is 74.",
        " 2 + 2 = 4. The answer is 4.",
        " 9 + 9 = 17. The answer is 17.",
        " 5 + 5 = 10. The answer is 10.",
    ]
    assert [row["resampled"] for row in out] == [True, False, False, True]
    assert [row["greedy_correct"] for row in out] == [False, True, False, True]
    assert counts == {"greedy_accuracy": 0.5, "working_fails": 3.0, "resampled": 2.0}
    scored, metrics = score_responses(out)
    assert metrics["accuracy"] == 0.5 and [row["correct"] for row in scored] == [True, True, False, False]
    held = [answered[1]]  # every working holds: nothing is sampled
    kept, counts = resample_failed_working(engine, held, k=3, temperature=0.8, top_p=0.95, seed=7, **options)
    assert len(engine.calls) == 2 and kept[0]["response"] == held[0]["response"] and counts["resampled"] == 0.0


def test_resampling_needs_the_working_check_named_in_the_error() -> None:
    config = CampaignConfig.model_validate({"evaluate": {"resample_failed_working": 4}})  # built-in task: checked
    assert config.evaluate.resample_failed_working == 4
    assert "resample_failed_working" not in CampaignConfig().model_dump_json()  # unset: as configs before it
    with pytest.raises(ValueError, match=r"evaluate.resample_failed_working=4 .* judge.require_work is off"):
        CampaignConfig.model_validate({"evaluate": {"resample_failed_working": 4}, "judge": {"require_work": False}})


def test_greedy_rows_score_what_greedy_decoding_answered() -> None:
    rows = [
        {"id": "a", "response": " 3 + 4 = 7. The answer is 7.", "correct": True, "score": 1.0, "lenient_correct": True}
        | {"greedy_response": " 3 + 4 = 8. The answer is 8.", "greedy_correct": False, "resampled": True},
        {"id": "b", "response": " 2 + 2 = 4. The answer is 4.", "correct": True, "score": 1.0, "lenient_correct": True}
        | {"greedy_response": " 2 + 2 = 4. The answer is 4.", "greedy_correct": True, "resampled": False},
    ]
    greedy = greedy_rows(rows)
    assert [(row["response"], row["correct"], row["score"]) for row in greedy] == [
        (" 3 + 4 = 8. The answer is 8.", False, 0.0),
        (" 2 + 2 = 4. The answer is 4.", True, 1.0),
    ]
    assert all("lenient_correct" not in row for row in greedy)  # read of the scored response, not the greedy one
    assert rows[0]["score"] == 1.0  # the rows themselves are untouched
