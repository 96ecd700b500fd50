"""ReST-EM's accumulated training set (`tasks.accumulate.accumulate`), by hand."""

from __future__ import annotations

from tasks.accumulate import accumulate


def _row(prompt: str, response: str) -> dict[str, str]:
    return {"prompt": prompt, "response": response}


def test_newest_round_first_each_pair_once_and_a_cap_per_prompt() -> None:
    round1 = [_row("p", "a"), _row("p", "b"), _row("q", "x")]
    round2 = [_row("p", "c"), _row("p", "a"), _row("r", "y")]  # ("p", "a") again: kept once, from round 2
    rows = accumulate([round1, round2], max_per_prompt=2)
    assert [(r["prompt"], r["response"], r["from_round"]) for r in rows] == [
        ("p", "c", 2),
        ("p", "a", 2),
        ("r", "y", 2),
        ("q", "x", 1),  # ("p", "b") is past p's cap of 2: the newer round's rows won the places
    ]


def test_one_round_is_its_own_rows_deduplicated() -> None:
    rows = accumulate([[_row("p", "a"), _row("p", "a"), _row("p", "b")]], max_per_prompt=5)
    assert [(r["response"], r["from_round"]) for r in rows] == [("a", 1), ("b", 1)]
