"""The built-in task: seeded arithmetic word problems with verifiable integer answers, split by problem.

Problems come in several phrasings and a difficulty knob (operand range). A problem's split is fixed by a
stable hash of the underlying problem, its operation and unordered operands, never by its text: "3 plus 5"
and "Ana has 5 pens and gets 3 more" are one problem and always land in the same split, so no wording of a
validation or test problem is ever trained on. Three splits have fixed roles (train; validation decides;
test reports), and an out-of-distribution slice (`ood`) asks test-style questions in phrasings reserved
for it (never used for training) with operands beyond the training range (max_operand+1 .. 2*max_operand).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

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
]
# Phrasings reserved for the out-of-distribution slice: never used by the train, validation or test splits.
OOD_TEMPLATES: list[tuple[str, str]] = [
    ("add", "{n} and {m} pool their {i}: {n} brings {a} and {m} brings {b}. How many {i} do they have together?"),
    ("add", "Compute the sum of {a} and {b}."),
    ("sub", "Out of {a} {i}, {n} sells {b}. How many {i} remain unsold?"),
    ("sub", "Compute the difference between {a} and {b}."),
]

SPLITS = ("train", "validation", "test", "ood")
# Share of the problem space (operation, unordered operands) in each in-range split; the rest is train.
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
# Deprecated: "heldout" is the old name of validation (the flows ask for "validation"); kept for old callers.
SPLIT_ALIASES = {"heldout": "validation"}


def problem_split(op: str, a: int, b: int) -> str:
    """The split ("train", "validation" or "test") of a problem, by a stable hash of (op, min, max).

    Args:
        op: "add" or "sub".
        a: One operand.
        b: The other operand (order does not matter: 3 + 5 and 5 + 3 are one problem).
    """
    key = f"{op}:{min(a, b)}:{max(a, b)}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
    if bucket < VALIDATION_SHARE:
        return "validation"
    if bucket < VALIDATION_SHARE + TEST_SHARE:
        return "test"
    return "train"


def _template_pattern(phrasing: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z]\})", phrasing)
    groups = {"{a}": r"(?P<a>\d+)", "{b}": r"(?P<b>\d+)"}
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


def parse_problem(question: str) -> tuple[str, int, int, bool] | None:
    """(operation, a, b, is an OOD phrasing) of a built-in question, or None when no phrasing matches it."""
    for op, pattern, ood in _PATTERNS:
        found = pattern.match(question)
        if found:
            return op, int(found["a"]), int(found["b"]), ood
    return None


def make_problem(
    rng: random.Random,
    min_operand: int,
    max_operand: int,
    operations: Sequence[str],
    templates: Sequence[tuple[str, str]] = TEMPLATES,
) -> Record:
    """One random word problem with its integer answer, worked solution and underlying (`op`, `a`, `b`)."""
    op = rng.choice(list(operations))
    phrasing = rng.choice([t for o, t in templates if o == op])
    a, b = rng.randint(min_operand, max_operand), rng.randint(min_operand, max_operand)
    if op == "sub" and b > a:
        a, b = b, a
    name, other = rng.sample(NAMES, 2)
    question = phrasing.format(n=name, m=other, i=rng.choice(ITEMS), a=a, b=b)
    result = a + b if op == "add" else a - b
    sign = "+" if op == "add" else "-"
    return {
        "prompt": question,
        "answer": str(result),
        "solution": f" {a} {sign} {b} = {result}. The answer is {result}.",
        "op": op,
        "a": a,
        "b": b,
    }


def sample_problems(
    n: int,
    *,
    split: str,
    seed: int,
    min_operand: int = 1,
    max_operand: int = 9,
    operations: Sequence[str] = ("add", "sub"),
) -> list[Record]:
    """`n` distinct problems from one split, reproducible from `seed`.

    train, validation and test draw operands from `min_operand..max_operand` and keep the problems whose
    `problem_split` is theirs; ood draws both operands from `max_operand+1..2*max_operand` and uses only
    the OOD phrasings.

    Args:
        n: How many distinct questions.
        split: "train", "validation", "test" or "ood" ("heldout": deprecated alias of validation).
        seed: Seed of the draw.
        min_operand: Smallest in-range operand.
        max_operand: Largest in-range operand.
        operations: Operations to use.

    Returns:
        Records `{"id", "prompt", "answer", "solution", "op", "a", "b"}`.

    Raises:
        ValueError: for an unknown split, or if the split cannot supply `n` distinct problems at this difficulty.
    """
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    rng = random.Random(f"{split}:{seed}:{min_operand}:{max_operand}:{','.join(operations)}")
    ood = split == "ood"
    low, high = (max_operand + 1, 2 * max_operand) if ood else (min_operand, max_operand)
    templates = OOD_TEMPLATES if ood else TEMPLATES
    seen: set[str] = set()
    out: list[Record] = []
    for _ in range(200 * n + 1000):
        problem = make_problem(rng, low, high, operations, templates)
        if problem["prompt"] in seen:
            continue
        if not ood and problem_split(problem["op"], problem["a"], problem["b"]) != split:
            continue
        seen.add(problem["prompt"])
        problem["id"] = f"{split}-{hashlib.sha256(problem['prompt'].encode()).hexdigest()[:12]}"
        out.append(problem)
        if len(out) == n:
            return out
    raise ValueError(f"could not draw {n} distinct {split} problems with operands {low}..{high}")


def vocabulary_corpus() -> list[str]:
    """Every word the built-in task can produce, for building a tokenizer that covers it."""
    # The OOD phrasings stay out: the byte-level tokenizer still encodes them, and their words are unseen by design.
    words = " ".join(t for _, t in TEMPLATES) + " " + " ".join(NAMES + ITEMS)
    words += " Question: Answer: The answer is = + - . ? 0 1 2 3 4 5 6 7 8 9"
    return [words]
