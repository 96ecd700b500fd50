"""The built-in task: seeded arithmetic word problems with verifiable integer answers, split by problem.

Problems come in several phrasings and kinds: one-step addition, subtraction and multiplication ("mul"),
and two-step problems ("add-sub": a + b - c, "add-add": a + b + c, "mul-add": a * b + c) whose worked
solutions show each step.
Difficulty is the operand range, or a level of `LEVELS` (kinds and ranges, easiest first) that a
curriculum climbs. A problem's split is fixed by a stable hash of the underlying problem, its operation
and operands in canonical form (`problem_key`: unordered where the operation commutes, all three addends of
"add-add" too; the operand subtracted, or added after a product, in place), never by its text: "3 plus 5"
and "Ana has 5 pens and gets 3 more" are one problem and always land in the same split, and so are "1 plus
8 plus 7" and "1 plus 7 plus 8", so no wording of a validation or test problem is ever trained on. Three
splits have fixed roles (train; validation decides; test reports), and an out-of-distribution slice (`ood`)
asks test-style questions in phrasings reserved for it (never used for training) with operands beyond the
training range (max_operand+1 .. 2*max_operand).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import permutations
from typing import Any

from tasks.records import Record

NAMES = ["Tom", "Ana", "Ben", "Mia", "Sam", "Lea", "Max", "Eva", "Leo", "Zoe", "Kim", "Raj"]
ITEMS = ["apples", "books", "coins", "pens", "cards", "shells", "stamps", "cookies", "marbles", "boxes"]

# (operation, phrasing). {n}/{m}: names, {i}: item, {a}/{b}: operands.
TEMPLATES: list[tuple[str, str]] = [
    ("add", "{n} has {a} {i} and gets {b} more. How many {i} does {n} have now?"),
    ("add", "There are {a} {i} in a box. {n} puts in {b} more. How many {i} are in the box?"),
    ("add", "{n} found {a} {i} on Monday and {b} on Tuesday. How many {i} did {n} find in total?"),
    ("add", "What is {a} plus {b}?"),
    ("sub", "{n} has {a} {i} and gives {b} to {m}. How many {i} does {n} have left?"),
    ("sub", "A shelf holds {a} {i}. {n} takes {b} away. How many {i} are on the shelf now?"),
    ("sub", "{n} had {a} {i} and lost {b} of them. How many {i} does {n} have now?"),
    ("sub", "What is {a} minus {b}?"),
    # Harder kinds (appended, so the add/sub draws above are unchanged): multiplication and two-step problems.
    ("mul", "{n} has {a} bags with {b} {i} in each. How many {i} does {n} have?"),
    ("mul", "{n} buys {a} packs of {b} {i}. How many {i} does {n} buy?"),
    ("mul", "What is {a} times {b}?"),
    ("add-sub", "{n} has {a} {i}, gets {b} more and gives {c} to {m}. How many {i} does {n} have now?"),
    ("add-sub", "A box holds {a} {i}. {n} puts in {b} more and takes out {c}. How many {i} are in the box now?"),
    ("add-sub", "What is {a} plus {b} minus {c}?"),
    ("mul-add", "{n} buys {a} packs of {b} {i} and finds {c} more. How many {i} does {n} have?"),
    ("mul-add", "There are {a} rows of {b} {i} and {c} more {i}. How many {i} are there in total?"),
    ("mul-add", "What is {a} times {b} plus {c}?"),
    # Words the phrasings above already use, so the tiny tokenizer's corpus (vocabulary_corpus) covers them.
    ("add-add", "{n} has {a} {i}, gets {b} more and finds {c} more. How many {i} does {n} have now?"),
    ("add-add", "A box holds {a} {i}. {n} puts in {b} more and {c} more. How many {i} are in the box now?"),
    ("add-add", "What is {a} plus {b} plus {c}?"),
]
# Phrasings reserved for the out-of-distribution slice: never used by the train, validation or test splits.
OOD_TEMPLATES: list[tuple[str, str]] = [
    ("add", "{n} and {m} pool their {i}: {n} brings {a} and {m} brings {b}. How many {i} do they have together?"),
    ("add", "Compute the sum of {a} and {b}."),
    ("sub", "Out of {a} {i}, {n} sells {b}. How many {i} remain unsold?"),
    ("sub", "Compute the difference between {a} and {b}."),
    ("mul", "Compute the product of {a} and {b}."),
    ("add-sub", "Compute {a} plus {b}, then subtract {c}."),
    ("mul-add", "Compute {a} times {b}, then add {c}."),
    ("add-add", "Compute {a} plus {b}, then add {c}."),
]
OPERATIONS = ("add", "sub", "mul", "add-sub", "mul-add", "add-add")
TWO_STEP = ("add-sub", "mul-add", "add-add")  # three operands, two worked steps
# The two-step kinds made of one-step additions and subtractions, which a working writes step by step, and which
# `two_step_share` mixes into a draw: their second step works on a number up to twice the operand range.
CHAINED = ("add-add", "add-sub")
# Difficulty levels, easiest first (level 1 is LEVELS[0]): the kinds of problem and each kind's operand range.
LEVELS: list[dict[str, tuple[int, int]]] = [
    {"add": (1, 9), "sub": (1, 9)},
    {"add": (1, 20), "sub": (1, 20)},
    {"add": (1, 20), "sub": (1, 20), "mul": (1, 9)},
    {"add": (1, 20), "sub": (1, 20), "mul": (1, 9), "add-sub": (1, 20), "mul-add": (1, 9)},
]

SPLITS = ("train", "validation", "test", "ood")
# Share of the problem space (`problem_key`) in each in-range split; the rest is train.
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
# Deprecated: "heldout" is the old name of validation (the flows ask for "validation"); kept for old callers.
SPLIT_ALIASES = {"heldout": "validation"}


def problem_key(op: str, a: int, b: int, c: int | None = None) -> str:
    """A problem's canonical form, which `problem_split` hashes: one key for every way of writing the same sum.

    a + b, a * b: a and b unordered. a + b - c, a * b + c: a and b unordered, c in place (it is subtracted,
    or added to a product). a + b + c: all three unordered, so "1 plus 8 plus 7" and "1 plus 7 plus 8" are one
    problem. The key of an arrangement already in that order (a <= b <= c) is the one it had when only a and b
    were sorted, so those keep their split.

    Raises:
        ValueError: for a two-step operation without `c`, or a one-step one with it.
    """
    if (c is not None) != (op in TWO_STEP):
        raise ValueError(f"operation {op!r} takes {3 if op in TWO_STEP else 2} operands")
    if op == "add-add" and c is not None:
        low, middle, high = sorted((a, b, c))
        return f"{op}:{low}:{middle}:{high}"
    return f"{op}:{min(a, b)}:{max(a, b)}" + (f":{c}" if c is not None else "")


def problem_split(op: str, a: int, b: int, c: int | None = None) -> str:
    """The split ("train", "validation" or "test") of a problem, by a stable hash of its canonical form
    (`problem_key`).

    Args:
        op: One of `OPERATIONS`.
        a: One operand.
        b: The other operand (order of a and b does not matter: 3 + 5 and 5 + 3 are one problem).
        c: A two-step problem's third operand (the one subtracted or added last; for "add-add" its order does not
            matter either); None for one step.

    Raises:
        ValueError: for a two-step operation without `c`, or a one-step one with it.
    """
    key = problem_key(op, a, b, c).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
    if bucket < VALIDATION_SHARE:
        return "validation"
    if bucket < VALIDATION_SHARE + TEST_SHARE:
        return "test"
    return "train"


def _template_pattern(phrasing: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z]\})", phrasing)
    groups = {"{a}": r"(?P<a>\d+)", "{b}": r"(?P<b>\d+)", "{c}": r"(?P<c>\d+)"}
    seen: set[str] = set()
    out = []
    for part in parts:
        if part in groups and part not in seen:
            out.append(groups[part])
            seen.add(part)
        elif part in ("{n}", "{m}", "{i}"):
            out.append(r"\w+")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out) + "$")


_PATTERNS = [
    (op, _template_pattern(phrasing), ood)
    for ood, table in ((False, TEMPLATES), (True, OOD_TEMPLATES))
    for op, phrasing in table
]


def parse_question(question: str) -> tuple[str, tuple[int, ...], bool] | None:
    """(operation, operands in order, is an OOD phrasing) of a built-in question, or None when no phrasing
    matches it."""
    for op, pattern, ood in _PATTERNS:
        found = pattern.match(question)
        if found:
            operands = tuple(int(found[g]) for g in ("a", "b", "c") if g in pattern.groupindex)
            return op, operands, ood
    return None


def parse_problem(question: str) -> tuple[str, int, int, bool] | None:
    """(operation, a, b, is an OOD phrasing) of a built-in one-step question, or None when no one-step
    phrasing matches it (two-step questions: `parse_question`)."""
    parsed = parse_question(question)
    if parsed is None or len(parsed[1]) != 2:
        return None
    op, (a, b), ood = parsed
    return op, a, b, ood


def _stated(a: int, sign: str, b: int, result: int) -> str:
    """One computation as the plain worked solution states it: " 7 + 5 = 12." """
    return f" {a} {sign} {b} = {result}."


def make_problem(
    rng: random.Random,
    min_operand: int,
    max_operand: int,
    operations: Sequence[str],
    templates: Sequence[tuple[str, str]] = TEMPLATES,
    ranges: Mapping[str, tuple[int, int]] | None = None,
) -> Record:
    """One random word problem with its integer answer, worked solution (each step shown) and underlying
    (`op`, `a`, `b`, and `c` for a two-step problem).

    `ranges` gives an operation its own operand range (a level of `LEVELS`); the others use
    `min_operand..max_operand`. Answers are never negative.
    """
    op = rng.choice(list(operations))
    phrasing = rng.choice([t for o, t in templates if o == op])
    low, high = (ranges or {}).get(op, (min_operand, max_operand))
    a, b = rng.randint(low, high), rng.randint(low, high)
    if op == "sub" and b > a:
        a, b = b, a
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    problem: Record = {"op": op, "a": a, "b": b}
    if op in ("add", "sub", "mul"):
        result = a + b if op == "add" else a - b if op == "sub" else a * b
        sign = {"add": "+", "sub": "-", "mul": "*"}[op]
        solution = f"{_stated(a, sign, b, result)} The answer is {result}."
    else:
        first, sign = (a * b, "*") if op == "mul-add" else (a + b, "+")
        c = rng.randint(low, min(high, first)) if op == "add-sub" else rng.randint(low, high)
        result = first - c if op == "add-sub" else first + c
        last = "-" if op == "add-sub" else "+"
        solution = f"{_stated(a, sign, b, first)}{_stated(first, last, c, result)} The answer is {result}."
        problem["c"] = c
    question = phrasing.format(n=name, m=other, i=item, a=a, b=b, c=problem.get("c"))
    return {"prompt": question, "answer": str(result), "solution": solution, **problem}


def ones_working(op: str, a: int, b: int) -> str | None:
    """The "ones" working of a one-step addition or subtraction (`WORKINGS`), or None where it says nothing the
    plain one does not (both operands below 10, no tens or no ones in the middle step, operands already a tens
    and a ones as in 20 + 5, or another operation). The smaller ones digit is taken from the larger, so no
    step goes below zero: "9 - 7 = 2. 17 - 9 = 10 - 2 = 8."."""
    if op not in ("add", "sub"):
        return None
    sign, result = ("+", a + b) if op == "add" else ("-", a - b)
    tens = (a // 10 + b // 10) * 10 if op == "add" else (a // 10 - b // 10) * 10
    ones = a % 10 + b % 10 if op == "add" else a % 10 - b % 10
    if (a < 10 and b < 10) or tens == 0 or ones == 0 or {tens, abs(ones)} == {a, b}:
        return None
    x, y = a % 10, b % 10
    fact = f"{x} + {y} = {x + y}" if op == "add" else f"{max(x, y)} - {min(x, y)} = {abs(x - y)}"
    middle = f"{tens} + {ones}" if ones > 0 else f"{tens} - {-ones}"
    return f" {fact}. {a} {sign} {b} = {middle} = {result}. The answer is {result}."


def ones_all_working(op: str, a: int, b: int) -> str | None:
    """The "ones_all" working (`WORKINGS`): `ones_working`, and for a subtraction with a two-digit first operand
    whose tens cancel or whose ones do, the ones' fact before the equation: "8 - 2 = 6. 18 - 12 = 6.",
    "4 - 4 = 0. 14 - 4 = 10."; None where both say nothing the plain working does not."""
    written = ones_working(op, a, b)
    if written is not None or op != "sub" or a < 10:
        return written
    x, y = a % 10, b % 10
    if a // 10 != b // 10 and x != y:
        return None
    return f" {max(x, y)} - {min(x, y)} = {abs(x - y)}. {a} - {b} = {a - b}. The answer is {a - b}."


def digits_working(op: str, a: int, b: int) -> str | None:
    """The "digits" working (`WORKINGS`): column by column, each a one-digit fact, the carry or borrow written
    as "+ 1" or "- 1" in the tens' fact, then the equation: "9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74.", "12 - 9 =
    3. 3 - 2 - 1 = 0. 32 - 29 = 3."; None where both operands are below 10 or for another operation."""
    if (a < 10 and b < 10) or op not in ("add", "sub"):
        return None
    x, y, ta, tb = a % 10, b % 10, a // 10, b // 10
    if op == "add":
        carry = (x + y) // 10
        steps = [f"{x} + {y} = {x + y}", f"{ta} + {tb}" + (" + 1" if carry else "") + f" = {ta + tb + carry}"]
        result, sign = a + b, "+"
    else:
        borrow = int(x < y)
        steps = [f"{x + 10 * borrow} - {y} = {x + 10 * borrow - y}"]
        steps.append(f"{ta} - {tb}" + (" - 1" if borrow else "") + f" = {ta - tb - borrow}")
        result, sign = a - b, "-"
    steps.append(f"{a} {sign} {b} = {result}")
    return " " + ". ".join(steps) + f". The answer is {result}."


# How a worked solution writes one-step addition and subtraction (`prompts.working`). "plain": the equation and its
# result. "ones": the ones digits' fact first, then tens and ones apart and together ("4 + 9 = 13. 14 + 19 =
# 20 + 13 = 33."), so every fact a held-out equation needs is one that training rows state (the split is by
# problem, and 4 + 9 sits inside 14 + 9, 4 + 19 and 14 + 19 alike). benchmarks/working_probe.py measured it on
# Gemma 270M: 300 gold rows score 0.775 on validation written "ones", 0.605 written "plain". "ones_all": "ones", and
# the ones' fact also where "ones" writes a two-digit subtraction plain because the tens or the ones cancel ("8 - 2 =
# 6. 18 - 12 = 6."): 0.855 from the same 300 rows (the ones gold arm got 20 of 35 such subtractions wrong, seed 0).
# "digits": each column a one-digit fact with its carry, so the tens' step is the same kind of fact as the ones' and
# carries past the training range; 300 gold rows score 0.320 on the probe's OOD development slice against ones_all's
# 0.233, and 0.745 on validation against 0.855 (400 rows: 0.380 against 0.227, and 0.815 against 0.915).
# Each working but plain, by the function that writes a one-step problem in it (None: the plain working instead).
WRITERS: dict[str, Callable[[str, int, int], str | None]] = {
    "ones": ones_working,
    "ones_all": ones_all_working,
    "digits": digits_working,
}
WORKINGS = ("plain", *WRITERS)


def _in_range_steps(
    problem: Mapping[str, Any], ranges: Mapping[str, tuple[int, int]] | None, low: int, high: int
) -> list[tuple[str, int, int]]:
    """A two-step problem's steps that are problems of the task themselves (both operands in their operation's
    range: "7 + 15" in 7 + 15 + 12, not "22 + 12"); none for a one-step problem."""
    if "c" not in problem:
        return []
    op, a, b, c = problem["op"], problem["a"], problem["b"], problem["c"]
    first_op, first = ("mul", a * b) if op == "mul-add" else ("add", a + b)
    steps = [(first_op, a, b), ("sub" if op == "add-sub" else "add", first, c)]
    bounds = ranges or {}
    return [
        (o, x, y)
        for o, x, y in steps
        if all(bounds.get(o, (low, high))[0] <= n <= bounds.get(o, (low, high))[1] for n in (x, y))
    ]


def kept_for_training(
    problem: Mapping[str, Any], ranges: Mapping[str, tuple[int, int]] | None, low: int, high: int
) -> bool:
    """Whether a training draw keeps `problem` (`op`, `a`, `b`, and `c` for two steps), drawn with `ranges` (a
    level's) or `low..high`: its `problem_split` is "train", and so is each of its steps that is a problem of the
    task itself, so a training row never works a held-out equation, not even as a step."""
    operands = (problem["a"], problem["b"], problem.get("c"))
    if problem_split(problem["op"], *operands) != "train":
        return False
    return all(problem_split(*step) == "train" for step in _in_range_steps(problem, ranges, low, high))


def may_draw_for_training(
    op: str, operands: Sequence[int], ranges: Mapping[str, tuple[int, int]], low: int, high: int
) -> bool:
    """Whether a training draw of the kinds and operand ranges in `ranges` (the rest at `low..high`) may ask the
    problem `op` on `operands` in some order of it (one `problem_key`: 1 + 8 + 7 for 1 + 7 + 8): its kind is one
    of `ranges`', every operand is within its range, and the draw keeps that order (`kept_for_training`)."""
    if op not in ranges or not all(ranges[op][0] <= x <= ranges[op][1] for x in operands):
        return False
    key = problem_key(op, *operands)
    orders = sorted({order for order in permutations(operands) if problem_key(op, *order) == key})
    return any(
        kept_for_training({"op": op, **dict(zip("abc", order, strict=False))}, ranges, low, high) for order in orders
    )


def _worked_step(working: str, op: str, a: int, b: int) -> str:
    """One step of a chained problem as `working` writes it, without "The answer is": " 7 + 5 = 12. 0 + 1 + 1 =
    2. 7 + 15 = 22." (digits), or " 3 + 4 = 7." where the working says nothing the plain one does not."""
    written = WRITERS[working](op, a, b)
    if written is None:
        return _stated(a, "+", b, a + b) if op == "add" else _stated(a, "-", b, a - b)
    return written.split(" The answer is")[0]


def worked_solution(problem: Record, working: str) -> str:
    """A drawn problem's worked solution written in `working` (`WORKINGS`): a two-step addition or subtraction
    (`CHAINED`) step by step, each step as the working writes it ("7 + 5 = 12. 0 + 1 + 1 = 2. 7 + 15 = 22. 2 + 2 =
    4. 2 + 1 = 3. 22 + 12 = 34." in digits); multiplication and "mul-add" keep their own.

    Raises:
        ValueError: for an unknown working.
    """
    if working not in WORKINGS:
        raise ValueError(f"working must be one of {', '.join(WORKINGS)}, not {working!r}")
    if working not in WRITERS or problem["op"] not in ("add", "sub", *CHAINED):
        return str(problem["solution"])
    a, b, op = problem["a"], problem["b"], problem["op"]
    if op in ("add", "sub"):
        return WRITERS[working](op, a, b) or str(problem["solution"])
    steps = [("add", a, b), ("add" if op == "add-add" else "sub", a + b, problem["c"])]
    worked = "".join(_worked_step(working, *step) for step in steps)
    return f"{worked} The answer is {problem['answer']}."


def sample_problems(
    n: int,
    *,
    split: str,
    seed: int,
    min_operand: int = 1,
    max_operand: int = 9,
    operations: Sequence[str] = ("add", "sub"),
    level: int | None = None,
    two_step_share: float = 0.0,
) -> list[Record]:
    """`n` distinct questions from one split, reproducible from `seed`. Distinct as text: several may ask one
    problem in other words (the default's 200 validation questions are 75-80 of the split's 85 problems), so
    statistics over them count problems (`tasks.prompts.item_problem`, `tasks.stats.clustered_interval`).

    train, validation and test draw operands from `min_operand..max_operand` and keep the problems whose
    `problem_split` is theirs; ood draws operands from `max_operand+1..2*max_operand` and uses only
    the OOD phrasings. With `level`, the level's kinds and ranges (`LEVELS`) replace `operations` and
    the operand range.

    Args:
        n: How many distinct questions.
        split: "train", "validation", "test" or "ood" ("heldout": deprecated alias of validation).
        seed: Seed of the draw.
        min_operand: Smallest in-range operand.
        max_operand: Largest in-range operand.
        operations: Operations to use (of `OPERATIONS`).
        level: A difficulty level, 1..len(LEVELS); None: `operations` and the operand range.
        two_step_share: The chance that a draw is a two-step addition or subtraction (`CHAINED`, in the
            operand range) instead of one of `operations`; 0 leaves the draw as it was.

    Returns:
        Records `{"id", "prompt", "answer", "solution", "op", "a", "b"}` (and `c` for two-step problems).

    Raises:
        ValueError: for an unknown split, operation or level, or if the split cannot supply `n` distinct
            questions at this difficulty.
    """
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, not {unknown[0]!r}")
    ood = split == "ood"
    ranges: dict[str, tuple[int, int]] | None = None
    if level is not None:
        if not 1 <= level <= len(LEVELS):
            raise ValueError(f"level must be 1..{len(LEVELS)}, not {level}")
        ranges = dict(LEVELS[level - 1])
        operations = list(ranges)
        if ood:
            ranges = {op: (high + 1, 2 * high) for op, (_, high) in ranges.items()}
        rng = random.Random(f"{split}:{seed}:level-{level}")
    else:
        rng = random.Random(f"{split}:{seed}:{min_operand}:{max_operand}:{','.join(operations)}")
    low, high = (max_operand + 1, 2 * max_operand) if ood else (min_operand, max_operand)
    templates = OOD_TEMPLATES if ood else TEMPLATES
    seen: set[str] = set()
    out: list[Record] = []
    chained: bool | None = None  # whether the next problem kept is a two-step one, drawn until one is kept
    for _ in range(200 * n + 1000):
        if chained is None:
            chained = bool(two_step_share) and rng.random() < two_step_share
        problem = make_problem(rng, low, high, CHAINED if chained else operations, templates, ranges)
        if problem["prompt"] in seen:
            continue
        operands = (problem["a"], problem["b"], problem.get("c"))
        if split == "train":
            if not kept_for_training(problem, ranges, low, high):
                continue
        elif not ood and problem_split(problem["op"], *operands) != split:
            continue
        seen.add(problem["prompt"])
        chained = None
        problem["id"] = f"{split}-{hashlib.sha256(problem['prompt'].encode()).hexdigest()[:12]}"
        out.append(problem)
        if len(out) == n:
            return out
    where = f"level {level}" if level is not None else f"operands {low}..{high}"
    raise ValueError(f"could not draw {n} distinct {split} problems with {where}")


def vocabulary_corpus() -> list[str]:
    """Every word the built-in task can produce, for building a tokenizer that covers it."""
    # The OOD phrasings stay out: the byte-level tokenizer still encodes them, and their words are unseen by design.
    # add-add's phrasings use the others' words and stay out, so the tokenizer trained on this is as it was.
    words = " ".join(t for op, t in TEMPLATES if op != "add-add") + " " + " ".join(NAMES + ITEMS)
    words += " Question: Answer: The answer is = + - . ? 0 1 2 3 4 5 6 7 8 9"
    return [words]
