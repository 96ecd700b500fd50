"""The built-in task: splits by problem (not by text), the OOD slice, phrasings, the difficulty knob and levels,
multiplication and two-step problems, and how worked solutions are written."""

import itertools

import pytest

from tasks.arithmetic import (
    LEVELS,
    OOD_TEMPLATES,
    TEMPLATES,
    TWO_STEP,
    digits_working,
    ones_all_working,
    ones_working,
    parse_problem,
    parse_question,
    problem_key,
    problem_split,
    sample_problems,
    worked_solution,
)
from tasks.judging.verifier import computations, final_answer, shows_work


def _problem(row: dict) -> tuple[str, int, int]:
    return row["op"], min(row["a"], row["b"]), max(row["a"], row["b"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 11])
@pytest.mark.parametrize(("low", "high"), [(1, 9), (1, 20), (10, 40)])
def test_no_problem_is_shared_between_train_and_validation_or_test(seed: int, low: int, high: int) -> None:
    train = sample_problems(400, split="train", seed=seed, min_operand=low, max_operand=high)
    validation = sample_problems(150, split="validation", seed=seed, min_operand=low, max_operand=high)
    test = sample_problems(150, split="test", seed=seed, min_operand=low, max_operand=high)
    train_problems = {_problem(p) for p in train}
    assert not train_problems & {_problem(p) for p in validation}
    assert not train_problems & {_problem(p) for p in test}
    assert not {_problem(p) for p in validation} & {_problem(p) for p in test}
    # the split is read from the problem itself: the text parses back to the same problem and split
    for split, rows in (("train", train), ("validation", validation), ("test", test)):
        for row in rows:
            op, a, b, reserved = parse_problem(row["prompt"])  # type: ignore[misc]
            assert (op, a, b, reserved) == (row["op"], row["a"], row["b"], False)
            assert problem_split(op, a, b) == split


def test_order_of_operands_does_not_change_the_split() -> None:
    for a in range(1, 30):
        for b in range(1, 30):
            assert problem_split("add", a, b) == problem_split("add", b, a)


def test_ood_phrasings_are_never_in_training_and_operands_are_beyond_the_range() -> None:
    train = sample_problems(500, split="train", seed=0)
    ood = sample_problems(100, split="ood", seed=0)
    reserved = {t for _, t in OOD_TEMPLATES}
    assert not reserved & {t for _, t in TEMPLATES}
    assert all(not parse_problem(p["prompt"])[3] for p in train)  # type: ignore[index]
    for row in ood:
        assert parse_problem(row["prompt"])[3]  # type: ignore[index]
        assert 10 <= row["a"] <= 18 and 10 <= row["b"] <= 18
        assert row["id"].startswith("ood-")


def test_splits_are_seeded() -> None:
    train = sample_problems(50, split="train", seed=1)
    assert sample_problems(20, split="train", seed=1) == train[:20]
    assert sample_problems(20, split="train", seed=2) != train[:20]
    assert sample_problems(20, split="heldout", seed=1) == sample_problems(20, split="validation", seed=1)


def test_answers_are_right_and_operands_follow_the_knob() -> None:
    for problem in sample_problems(200, split="train", seed=3, min_operand=10, max_operand=40):
        a, sign, b = problem["solution"].split()[:3]
        assert 10 <= int(a) <= 40 and 10 <= int(b) <= 40
        assert int(problem["answer"]) == (int(a) + int(b) if sign == "+" else int(a) - int(b)) >= 0
        assert final_answer(problem["solution"]) == problem["answer"]  # worked solutions are in the stated form


def test_several_phrasings_appear() -> None:
    problems = sample_problems(200, split="train", seed=4)
    starts = {p["prompt"].split()[0] for p in problems}
    assert len(TEMPLATES) >= 6 and len(starts) >= 5


def test_too_many_problems_for_the_space_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not draw"):
        sample_problems(500, split="validation", seed=0, min_operand=1, max_operand=1, operations=["add"])
    with pytest.raises(ValueError, match="split must be one of"):
        sample_problems(5, split="dev", seed=0)


def _digest(rows: list[dict]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def test_the_default_splits_are_unchanged_by_the_harder_kinds() -> None:
    # Digests of the problems (ids, texts, answers, solutions) as drawn before mul and two-step problems existed:
    # the default campaign's test set (and the others) stay byte-identical, so results compare across versions.
    drawn = {
        split: sample_problems(n, split=split, seed=0, min_operand=1, max_operand=20)
        for split, n in (("train", 48), ("validation", 200), ("test", 200), ("ood", 100))
    }
    assert {split: _digest(rows) for split, rows in drawn.items()} == {
        "train": "2d73a2d5d5c278e1",
        "validation": "2c882c557d9e1195",
        "test": "1dea6c11dca5899f",
        "ood": "3fd7083f344636c6",
    }
    assert _digest(sample_problems(200, split="test", seed=0)) == "fc1a583eecdce61d"  # tiny's range, 1..9


def _key(row: dict) -> tuple:
    # the underlying problem: operation, unordered (a, b), and a two-step problem's third operand in place, except
    # for a + b + c, whose three addends are unordered
    if row["op"] == "add-add":
        return row["op"], *sorted((row["a"], row["b"], row["c"]))
    return row["op"], min(row["a"], row["b"]), max(row["a"], row["b"]), row.get("c")


def test_multiplication_and_two_step_problems_have_worked_steps_and_stay_split_by_problem() -> None:
    kinds = ["add", "sub", "mul", "add-sub", "mul-add", "add-add"]
    drawn = {
        split: sample_problems(n, split=split, seed=5, min_operand=1, max_operand=9, operations=kinds)
        for split, n in (("train", 600), ("validation", 200), ("test", 200))
    }
    assert {row["op"] for row in drawn["train"]} == set(kinds)
    keys = {split: {_key(row) for row in rows} for split, rows in drawn.items()}
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    for split, rows in drawn.items():
        for row in rows:
            op, operands, ood = parse_question(row["prompt"])  # type: ignore[misc]
            assert (op, operands, ood) == (row["op"], (row["a"], row["b"], *([row["c"]] if "c" in row else [])), False)
            assert problem_split(op, *operands) == split
            a, b, c = row["a"], row["b"], row.get("c")
            expected = {
                "add": a + b,
                "sub": a - b,
                "mul": a * b,
                "add-sub": a + b - (c or 0),
                "mul-add": a * b + (c or 0),
                "add-add": a + b + (c or 0),
            }[op]
            assert int(row["answer"]) == expected >= 0
            assert shows_work(row["solution"]) and final_answer(row["solution"]) == row["answer"]
            assert len(computations(row["solution"])) == (2 if op in TWO_STEP else 1)  # each step shown
    # 3 + 5 - 2 and 5 + 3 - 2 are one problem; 3 + 5 - 2 and 3 + 2 - 5 are not the same problem
    assert problem_split("add-sub", 3, 5, 2) == problem_split("add-sub", 5, 3, 2)
    assert problem_split("mul", 3, 7) == problem_split("mul", 7, 3)
    with pytest.raises(ValueError, match="takes 3 operands"):
        problem_split("add-sub", 3, 5)


def test_every_arrangement_of_three_addends_is_one_problem_in_one_split() -> None:
    # "What is 1 plus 8 plus 7?" and "What is 1 plus 7 plus 8?" are one problem: one split, one key
    for a, b, c in [(1, 8, 7), (3, 5, 7), (2, 2, 9), (20, 1, 13)]:
        arrangements = set(itertools.permutations((a, b, c)))
        assert len({problem_key("add-add", *order) for order in arrangements}) == 1
        assert len({problem_split("add-add", *order) for order in arrangements}) == 1
    assert problem_key("add-add", 7, 5, 3) == "add-add:3:5:7"  # sorted: the key a <= b <= c always had
    # a + b - c and a * b + c: a and b commute, c does not (3 + 5 - 2 is not 3 + 2 - 5, 2 * 3 + 4 is not 2 * 4 + 3)
    assert problem_key("add-sub", 5, 3, 2) == problem_key("add-sub", 3, 5, 2) == "add-sub:3:5:2"
    assert problem_key("add-sub", 3, 2, 5) != problem_key("add-sub", 3, 5, 2)
    assert problem_key("mul-add", 3, 2, 4) == "mul-add:2:3:4" != problem_key("mul-add", 2, 4, 3)
    assert problem_key("add", 5, 3) == "add:3:5"
    # the audit's draw: 150 problems a split, add-add only, operands 1..9, shared 19 train/validation problems
    drawn = {
        split: sample_problems(150, split=split, seed=0, operations=["add-add"], max_operand=9)
        for split in ("train", "validation", "test")
    }
    keys = {split: {_key(row) for row in rows} for split, rows in drawn.items()}
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    with pytest.raises(ValueError, match="takes 3 operands"):
        problem_key("add-add", 3, 5)


def test_levels_climb_in_kinds_and_range_and_draw_their_own_problems() -> None:
    assert [sorted(level) for level in LEVELS] == [
        ["add", "sub"],
        ["add", "sub"],
        ["add", "mul", "sub"],
        ["add", "add-sub", "mul", "mul-add", "sub"],
    ]
    for level, ranges in enumerate(LEVELS, start=1):
        rows = sample_problems(300, split="train", seed=0, level=level)
        assert {row["op"] for row in rows} == set(ranges)
        for row in rows:
            low, high = ranges[row["op"]]
            assert all(low <= row[k] <= high for k in ("a", "b") if row["op"] != "sub" or k == "b")
            assert problem_split(row["op"], row["a"], row["b"], row.get("c")) == "train"
        ood = sample_problems(50, split="ood", seed=0, level=level)
        assert all(ranges[row["op"]][1] < max(row["a"], row["b"]) for row in ood)
    assert max(row["a"] for row in sample_problems(300, split="train", seed=0, level=2)) > 9  # 1..20 at level 2
    with pytest.raises(ValueError, match="level must be 1..4"):
        sample_problems(5, split="train", seed=0, level=5)
    with pytest.raises(ValueError, match="operation must be one of"):
        sample_problems(5, split="train", seed=0, operations=["div"])


def test_ones_working_states_the_ones_fact_then_tens_and_ones_and_every_step_holds() -> None:
    assert ones_working("add", 14, 19) == " 4 + 9 = 13. 14 + 19 = 20 + 13 = 33. The answer is 33."
    assert ones_working("sub", 17, 9) == " 9 - 7 = 2. 17 - 9 = 10 - 2 = 8. The answer is 8."
    assert ones_working("sub", 15, 3) == " 5 - 3 = 2. 15 - 3 = 10 + 2 = 12. The answer is 12."
    # nothing to split: one-digit operands, a zero middle term, or operands already a tens and a ones
    assert [ones_working(*args) for args in [("add", 8, 7), ("sub", 17, 14), ("add", 20, 5), ("mul", 4, 12)]] == [
        None
    ] * 4
    rows = sample_problems(300, split="train", seed=7, min_operand=1, max_operand=20)
    rewritten = 0
    for row in rows:
        solution = worked_solution(row, "ones")
        assert shows_work(solution) and final_answer(solution) == row["answer"]
        rewritten += solution != row["solution"]
        assert worked_solution(row, "plain") == row["solution"]
    assert rewritten > 150  # most operand pairs up to 20 have tens to split
    kept = sample_problems(20, split="train", seed=7, operations=["mul-add", "mul"])
    assert all(worked_solution(row, "ones") == row["solution"] for row in kept)
    with pytest.raises(ValueError, match="working must be one of plain, ones, ones_all, digits"):
        worked_solution(rows[0], "columns")


def test_ones_all_working_adds_the_ones_fact_where_ones_writes_a_subtraction_plain() -> None:
    assert ones_all_working("sub", 18, 12) == " 8 - 2 = 6. 18 - 12 = 6. The answer is 6."
    assert ones_all_working("sub", 14, 4) == " 4 - 4 = 0. 14 - 4 = 10. The answer is 10."
    assert ones_all_working("sub", 17, 9) == ones_working("sub", 17, 9)  # where "ones" has a working, the same
    assert [ones_all_working(*args) for args in [("add", 8, 7), ("sub", 9, 3), ("add", 20, 5), ("mul", 4, 12)]] == [
        None
    ] * 4
    rows = sample_problems(300, split="train", seed=7, min_operand=1, max_operand=20)
    for row in rows:
        solution = worked_solution(row, "ones_all")
        assert shows_work(solution) and final_answer(solution) == row["answer"]
        a, b = row["a"], row["b"]
        if row["op"] == "sub" and a >= 10 and (a // 10 == b // 10 or a % 10 == b % 10):
            assert solution.count("=") == 2, solution  # the tens or the ones cancel: the ones' fact first
        else:
            assert solution == worked_solution(row, "ones")


def test_digits_working_writes_each_column_as_a_one_digit_fact_with_its_carry() -> None:
    assert digits_working("add", 39, 35) == " 9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74. The answer is 74."
    assert digits_working("add", 33, 26) == " 3 + 6 = 9. 3 + 2 = 5. 33 + 26 = 59. The answer is 59."
    assert digits_working("sub", 32, 29) == " 12 - 9 = 3. 3 - 2 - 1 = 0. 32 - 29 = 3. The answer is 3."
    assert digits_working("sub", 17, 9) == " 17 - 9 = 8. 1 - 0 - 1 = 0. 17 - 9 = 8. The answer is 8."
    assert [digits_working(*args) for args in [("add", 8, 7), ("sub", 9, 3), ("mul", 4, 12)]] == [None] * 3
    for row in sample_problems(300, split="train", seed=7, min_operand=1, max_operand=20):
        solution = worked_solution(row, "digits")
        assert shows_work(solution) and final_answer(solution) == row["answer"], solution
    for row in sample_problems(100, split="ood", seed=0, min_operand=1, max_operand=20):
        assert shows_work(worked_solution(row, "digits")), row  # beyond the range too


def test_the_ones_facts_of_held_out_equations_are_stated_by_training_rows() -> None:
    # Why the working carries to held-out problems: the split is by problem, yet the one-digit fact a validation
    # equation needs (its own, or its ones digits') is one that training rows write down, in either order.
    def facts(rows: list[dict]) -> set[tuple[str, int, int]]:
        out = set()
        for row in rows:
            sign, x, y = ("+" if row["op"] == "add" else "-"), row["a"], row["b"]
            if ones_working(row["op"], x, y) is not None:
                x, y = x % 10, y % 10
            if x < 10 and y < 10:
                out.add((sign, min(x, y), max(x, y)))
        return out

    train = sample_problems(300, split="train", seed=7, min_operand=1, max_operand=20)
    validation = sample_problems(200, split="validation", seed=0, min_operand=1, max_operand=20)
    needed = facts(validation)
    # seen here: 40 of the 49 facts that 200 validation problems need are in 300 training rows
    assert len(needed) > 40 and len(needed - facts(train)) <= len(needed) // 4, sorted(needed - facts(train))


def test_a_two_step_share_mixes_chained_problems_into_training_written_step_by_step() -> None:
    one_step = sample_problems(300, split="train", seed=3, min_operand=1, max_operand=20)
    assert one_step == sample_problems(300, split="train", seed=3, min_operand=1, max_operand=20, two_step_share=0.0)
    rows = sample_problems(400, split="train", seed=3, min_operand=1, max_operand=20, two_step_share=0.25)
    chained = [row for row in rows if "c" in row]
    assert {row["op"] for row in chained} == {"add-add", "add-sub"} and 70 <= len(chained) <= 130
    assert any(row["a"] + row["b"] + row["c"] > 40 for row in chained if row["op"] == "add-add")
    for row in chained:
        assert problem_split(row["op"], row["a"], row["b"], row["c"]) == "train"
        # and neither step is a held-out problem: 7 + 15 + 12 is trained on only if 7 + 15 is a training problem
        assert problem_split("add", row["a"], row["b"]) == "train"
        if row["a"] + row["b"] <= 20:
            assert problem_split(row["op"][4:], row["a"] + row["b"], row["c"]) == "train"
        written = worked_solution(row, "digits")
        # each step in the working, and the second step on the first's result
        assert shows_work(written) and final_answer(written) == row["answer"]
        assert f"{row['a']} + {row['b']} = {row['a'] + row['b']}." in written
    worked = {"op": "add-add", "a": 7, "b": 15, "c": 12, "answer": "34", "solution": "unused"}
    assert worked_solution(worked, "digits") == (
        " 7 + 5 = 12. 0 + 1 + 1 = 2. 7 + 15 = 22. 2 + 2 = 4. 2 + 1 = 3. 22 + 12 = 34. The answer is 34."
    )
    borrow = {"op": "add-sub", "a": 9, "b": 7, "c": 4, "answer": "12", "solution": "unused"}
    assert worked_solution(borrow, "digits") == " 9 + 7 = 16. 6 - 4 = 2. 1 - 0 = 1. 16 - 4 = 12. The answer is 12."
    assert worked_solution(borrow, "ones") == " 9 + 7 = 16. 6 - 4 = 2. 16 - 4 = 10 + 2 = 12. The answer is 12."
