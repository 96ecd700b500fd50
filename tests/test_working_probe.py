"""benchmarks/working_probe.py: its workings verify, and its OOD development slice shares no problem with the OOD
test slices it leaves out (a working is chosen there, never on the slices that report)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.working_probe import (  # noqa: E402
    REPORTED_SEEDS,
    WORKINGS,
    chain_problems,
    digits,
    facts,
    ones_tens,
    ood_development,
    question_equation,
)
from configs.loader import load_config  # noqa: E402
from tasks.arithmetic import problem_split  # noqa: E402
from tasks.judging.verifier import final_answer, shows_work  # noqa: E402
from tasks.prompts import campaign_prompts  # noqa: E402


def test_the_digit_workings_state_one_digit_facts_and_verify() -> None:
    assert digits("add", 39, 35) == " 9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74. The answer is 74."
    assert digits("sub", 32, 29) == " 12 - 9 = 3. 3 - 2 - 1 = 0. 32 - 29 = 3. The answer is 3."
    assert ones_tens("add", 33, 26) == " 3 + 6 = 9. 3 + 2 = 5. 33 + 26 = 50 + 9 = 59. The answer is 59."
    assert ones_tens("sub", 18, 12) == " 8 - 2 = 6. 1 - 1 = 0. 18 - 12 = 6. The answer is 6."
    assert facts("add", 39, 35) == " 9 + 5 = 14. 3 + 3 = 6. 6 + 1 = 7. 39 + 35 = 74. The answer is 74."
    assert facts("sub", 32, 29) == " 10 - 9 = 1. 1 + 2 = 3. 3 - 2 = 1. 1 - 1 = 0. 32 - 29 = 3. The answer is 3."
    for write in WORKINGS.values():
        for a in range(1, 41):
            for b in range(1, a + 1):
                assert shows_work(write("add", a, b)) and shows_work(write("sub", a, b)), (write.__name__, a, b)


def test_the_ood_development_slice_leaves_out_every_reported_ood_test_problem() -> None:
    config = load_config("default", [])
    development = ood_development(config, 150)
    reported = {
        question_equation(p)
        for seed in REPORTED_SEEDS
        for p in campaign_prompts(config.model_copy(update={"seed": seed}), "ood", 0)
    }
    keys = [question_equation(p) for p in development]
    assert len(keys) == len(set(keys)) == 150
    assert not set(keys) & reported
    assert all(max(key[1:]) > config.prompts.max_operand for key in keys)
    with pytest.raises(ValueError, match="outside the reported test slices"):
        ood_development(config, 400)


def test_chained_rows_verify_and_work_no_held_out_or_ood_equation() -> None:
    rows = chain_problems(75, 7, 1, 20, digits)
    assert len({row["prompt"] for row in rows}) == 75
    for row in rows:
        assert shows_work(row["completion"]) and final_answer(row["completion"]) == row["answer"]
        a, b, c = (int(n) for n in re.findall(r"\d+", row["prompt"]))
        second = "add" if int(row["answer"]) == a + b + c else "sub"
        assert f" {a + b} {'+' if second == 'add' else '-'} {c} = {row['answer']}." in row["completion"]
        # its two equations: of the training split where in range; the second never has two operands above the
        # range, as the OOD slice's do
        assert problem_split("add", a, b) == "train" and c <= 20
        if a + b <= 20:
            assert problem_split(second, a + b, c) == "train"
