"""Unit tests of tasks.judging.cascade: which prompts are routed, and the stronger model's rows."""

from __future__ import annotations

from tasks.judging.cascade import cascade_rows, routed_prompts


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
