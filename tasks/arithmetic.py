"""The built-in task: seeded arithmetic word problems with verifiable integer answers.

Problems come in several phrasings and a difficulty knob (operand range). Train and held-out splits
are disjoint by construction: a problem's split is a function of its text (a stable hash), so any
seed, size or round draws training prompts that never appear in the held-out set.
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

HELDOUT_SHARE = 0.25  # share of the problem space reserved for held-out evaluation
ANSWER_PATTERN = re.compile(r"answer is\s*(-?\d+)", re.IGNORECASE)
NUMBER_PATTERN = re.compile(r"-?\d+")


def is_heldout(question: str) -> bool:
    """The split a question belongs to, fixed by a stable hash of its text."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big") / 2**32
    return bucket < HELDOUT_SHARE


def make_problem(rng: random.Random, min_operand: int, max_operand: int, operations: Sequence[str]) -> Record:
    """One random word problem with its integer answer and a worked solution."""
    op = rng.choice(list(operations))
    phrasing = rng.choice([t for o, t in TEMPLATES if o == op])
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
    """`n` distinct problems from one split ("train" or "heldout"), reproducible from `seed`.

    Raises:
        ValueError: if the split cannot supply `n` distinct problems at this difficulty.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    rng = random.Random(f"{split}:{seed}:{min_operand}:{max_operand}:{','.join(operations)}")
    want_heldout = split == "heldout"
    seen: set[str] = set()
    out: list[Record] = []
    for _ in range(200 * n + 1000):
        problem = make_problem(rng, min_operand, max_operand, operations)
        if problem["prompt"] in seen or is_heldout(problem["prompt"]) != want_heldout:
            continue
        seen.add(problem["prompt"])
        problem["id"] = f"{split}-{hashlib.sha256(problem['prompt'].encode()).hexdigest()[:12]}"
        out.append(problem)
        if len(out) == n:
            return out
    raise ValueError(f"could not draw {n} distinct {split} problems with operands {min_operand}..{max_operand}")


def vocabulary_corpus() -> list[str]:
    """Every word the built-in task can produce, for building a tokenizer that covers it."""
    words = " ".join(t for _, t in TEMPLATES) + " " + " ".join(NAMES + ITEMS)
    words += " Question: Answer: The answer is = + - . ? 0 1 2 3 4 5 6 7 8 9"
    return [words]


def extract_answer(response: str) -> str | None:
    """The final answer of a response: the last "answer is N", else the last number, else None."""
    found = ANSWER_PATTERN.findall(response)
    if found:
        return str(int(found[-1]))
    numbers = NUMBER_PATTERN.findall(response)
    return str(int(numbers[-1])) if numbers else None
