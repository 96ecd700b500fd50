"""Where a policy's wrong OOD additions go wrong: the first step of the digit working that fails.

An analysis of slices already reported, not a choice: it reads a finished campaign's scored OOD slice
(`RUNS/CAMPAIGN/round-NN/ood-evaluated.jsonl`) and sorts each wrong one-step addition by the first step of the
"digits" working (`tasks.arithmetic.digits_working`: "9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74.") that is not
what the problem asks:

- `fewer steps`: no ones' fact, tens' fact and equation (a bare equation, or steps left out);
- `ones digits misread`: the ones' fact adds other digits than the operands' ones;
- `ones fact wrong`: the right digits, a wrong sum;
- `tens digits misread`: the tens' fact adds other digits than the operands' tens;
- `carry dropped` / `carry invented`: the ones carry and the tens' fact has no "+ 1", or the reverse;
- `tens fact wrong`: the right terms, a wrong sum;
- `answer is the ones' sum`: both facts right, the equation's result is the ones' sum (or its last digit);
- `equation wrong`: both facts right, another wrong result; `other`: every step right, the answer not.

    .venv/bin/python benchmarks/ood_errors.py runs/kinds-s0-*/round-02 runs/kinds-s1-*/round-02

Prints one line per round folder; appends nothing (the folders are the record).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.arithmetic import parse_question  # noqa: E402
from tasks.judging.verifier import computations  # noqa: E402

CLASSES = (
    "fewer steps",
    "ones digits misread",
    "ones fact wrong",
    "tens digits misread",
    "carry dropped",
    "carry invented",
    "tens fact wrong",
    "answer is the ones' sum",
    "equation wrong",
    "other",
)


def first_wrong_step(a: int, b: int, response: str) -> str:
    """The class (`CLASSES`) of a wrong answer to `a + b` written in the digit working."""
    steps = [(text.split(" = ")[0], value) for text, _, value in computations(response)]
    if len(steps) < 3:
        return "fewer steps"
    x, y, ta, tb = a % 10, b % 10, a // 10, b // 10
    carry = (x + y) // 10
    (ones_terms, ones_sum), (tens_terms, tens_sum), (_, result) = steps[:3]
    tens_digits = tens_terms.removesuffix(" + 1")
    if ones_terms not in (f"{x} + {y}", f"{y} + {x}"):
        return "ones digits misread"
    if ones_sum != x + y:
        return "ones fact wrong"
    if tens_digits not in (f"{ta} + {tb}", f"{tb} + {ta}"):
        return "tens digits misread"
    if carry and tens_digits == tens_terms:
        return "carry dropped"
    if not carry and tens_digits != tens_terms:
        return "carry invented"
    if tens_sum != ta + tb + carry:
        return "tens fact wrong"
    if result != a + b:
        return "answer is the ones' sum" if result in (x + y, (x + y) % 10) else "equation wrong"
    return "other"


def classify(folder: Path) -> tuple[int, int, Counter[str]]:
    """(right additions, all additions, wrong ones by class) of one round folder's scored OOD slice."""
    right, total, wrong = 0, 0, Counter[str]()
    for line in (folder / "ood-evaluated.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        parsed = parse_question(row["prompt"])
        if parsed is None or parsed[0] != "add":
            continue
        total += 1
        if row["correct"]:
            right += 1
        else:
            a, b = parsed[1]
            wrong[first_wrong_step(a, b, row["response"])] += 1
    return right, total, wrong


def main() -> int:
    """Print each folder's additions right and its wrong ones by class."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="round folders holding ood-evaluated.jsonl")
    for folder in parser.parse_args().folders:
        right, total, wrong = classify(folder)
        classes = ", ".join(f"{name} {wrong[name]}" for name in CLASSES if wrong[name])
        print(f"{folder}: {right}/{total} additions right; wrong: {classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
