"""Which written working lets Gemma 270M carry arithmetic to equations it never trained on?

Issue 13's default ends near 0.60 on validation, and 300 gold rows of the built-in working ("14 + 19 = 33.")
score the same as 99 self-found ones: nearly every wrong answer sets the problem up right and computes it
wrong. The split is by problem, so a validation equation is one no training row holds. A working that breaks
an equation into tens and ones ("14 + 19 = 20 + 13 = 33.") rewrites it into steps that training rows do share:
the ones' fact 4 + 9 is in 9 + 4, 14 + 9 and 19 + 4 alike.

This probe trains a fresh LoRA on the base model (the default's training settings, as a `train.init: base`
round does) on gold rows of the training split written in one working, answers the default campaign's 200
validation problems greedily with no examples in front, and prints the strict accuracy with its 95% interval,
split by whether the equation carries or borrows. Validation only: test stays untouched. With `--ood N` it
also scores N problems of the OOD kind (operands beyond the training range, the OOD phrasings) that are not
problems of the OOD test slices of campaign seeds 0-2 (`ood_development`): a working meant to carry beyond the
range is chosen there, and the OOD slices that report stay untouched.

    .venv/bin/python benchmarks/working_probe.py tens --rows 300 --seed 1
    .venv/bin/python benchmarks/working_probe.py digits --rows 300 --seed 1 --ood 150

Appends one JSON line per probe to `benchmarks/results/working_probe.jsonl`.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import append_line
from configs.loader import load_config
from configs.schema import CampaignConfig
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.arithmetic import (
    ITEMS,
    NAMES,
    TEMPLATES,
    digits_working,
    ones_all_working,
    ones_working,
    parse_problem,
    problem_split,
    sample_problems,
)
from tasks.base_model import cache_root
from tasks.evaluate import evaluate_greedy
from tasks.judging.verifier import shows_work
from tasks.prompts import campaign_prompts, split_draw
from tasks.records import Record
from tasks.stats import wilson_interval
from tasks.tracking import git_commit
from tasks.train_sft import train_sft

RESULTS = ROOT / "benchmarks" / "results" / "working_probe.jsonl"


def plain(op: str, a: int, b: int) -> str:
    """The built-in working: the equation and its result."""
    sign, result = ("+", a + b) if op == "add" else ("-", a - b)
    return f" {a} {sign} {b} = {result}. The answer is {result}."


def tens(op: str, a: int, b: int) -> str:
    """Tens and ones apart, then together: "14 + 19 = 20 + 13 = 33.", "17 - 9 = 10 - 2 = 8."; the plain
    working where the split says nothing new (both operands below 10, no tens or no ones left, or the
    operands are already a tens and a ones: 20 + 5)."""
    sign, result = ("+", a + b) if op == "add" else ("-", a - b)
    tens_part = (a // 10 + b // 10) * 10 if op == "add" else (a // 10 - b // 10) * 10
    ones_part = a % 10 + b % 10 if op == "add" else a % 10 - b % 10
    if (a < 10 and b < 10) or tens_part == 0 or ones_part == 0 or {tens_part, abs(ones_part)} == {a, b}:
        return plain(op, a, b)
    middle = f"{tens_part} + {ones_part}" if ones_part > 0 else f"{tens_part} - {-ones_part}"
    return f" {a} {sign} {b} = {middle} = {result}. The answer is {result}."


def ones(op: str, a: int, b: int) -> str:
    """The built-in task's "ones" working (`prompts.working: ones`, `tasks.arithmetic.ones_working`): the ones
    digits' fact first, "4 + 9 = 13. 14 + 19 = 20 + 13 = 33."; plain where it says nothing new."""
    return ones_working(op, a, b) or plain(op, a, b)


def columns(op: str, a: int, b: int) -> str:
    """Column by column, one small fact per step: the ones' fact, the tens' fact, then the two together
    ("4 + 9 = 13. 10 + 10 = 20. 20 + 13 = 33.", "9 - 7 = 2. 10 - 0 = 10. 10 - 2 = 8."); the tens' step is
    left out where one operand has no tens, and both operands below 10 get the plain working. Every step is
    a fact among a few hundred, so training rows state what a held-out equation needs, tens included (the
    "ones" working's "14 + 19 = 20 + 13" asks the model to sum the tens in its head)."""
    if (a < 10 and b < 10) or op not in ("add", "sub"):
        return plain(op, a, b)
    result = a + b if op == "add" else a - b
    x, y, ta, tb = a % 10, b % 10, a - a % 10, b - b % 10
    if op == "add":
        steps = [f"{x} + {y} = {x + y}"]
        if ta and tb:
            steps.append(f"{ta} + {tb} = {ta + tb}")
        steps.append(f"{ta + tb} + {x + y} = {result}")
    else:
        ones_fact = f"{x} - {y} = {x - y}" if x >= y else f"{y} - {x} = {y - x}"
        steps = [ones_fact]
        if tb:
            steps.append(f"{ta} - {tb} = {ta - tb}")
        sign = "+" if x >= y else "-"
        steps.append(f"{ta - tb} {sign} {abs(x - y)} = {result}")
    return " " + ". ".join(steps) + f". The answer is {result}."


def digits(op: str, a: int, b: int) -> str:
    """The built-in task's "digits" working (`prompts.working: digits`, `tasks.arithmetic.digits_working`): each
    column a one-digit fact with its carry or borrow, then the equation ("9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 =
    74."); plain where both operands are below 10."""
    return digits_working(op, a, b) or plain(op, a, b)


def ones_all(op: str, a: int, b: int) -> str:
    """The built-in task's "ones_all" working (`prompts.working: ones_all`, `tasks.arithmetic.ones_all_working`):
    "ones", and the ones' fact also where the tens or the ones cancel ("8 - 2 = 6. 18 - 12 = 6."), which "ones"
    writes plain."""
    return ones_all_working(op, a, b) or plain(op, a, b)


def ones_tens(op: str, a: int, b: int) -> str:
    """The "ones_all" working with the tens digits' fact after the ones' ("4 + 9 = 13. 1 + 1 = 2. 14 + 19 =
    20 + 13 = 33.", "9 - 7 = 2. 1 - 0 = 1. 17 - 9 = 10 - 2 = 8.", "8 - 2 = 6. 1 - 1 = 0. 18 - 12 = 6."); plain
    where "ones_all" is. The tens ("20" above) then follow from a one-digit fact, as they must beyond the
    training range ("3 + 2 = 5. 33 + 26 = 50 + 9"), where "ones_all" recalls them whole."""
    written = ones_all_working(op, a, b)
    if written is None:
        return plain(op, a, b)
    ones_fact, rest = written.split(". ", 1)
    sign, tens = ("+", a // 10 + b // 10) if op == "add" else ("-", a // 10 - b // 10)
    return f"{ones_fact}. {a // 10} {sign} {b // 10} = {tens}. {rest}"


def facts(op: str, a: int, b: int) -> str:
    """The "digits" working with every step a fact of two one-digit numbers (or ten less one): the carry
    added as a step of its own ("9 + 5 = 14. 3 + 3 = 6. 6 + 1 = 7. 39 + 35 = 74."), and the borrow as ten
    less the subtrahend's digit plus the minuend's, then the tens less the borrowed one ("10 - 9 = 1. 1 + 2 =
    3. 3 - 2 = 1. 1 - 1 = 0. 32 - 29 = 3."); plain where both operands are below 10. In "digits" the carry
    is a three-term fact ("3 + 3 + 1 = 7") that training rows state only for tens digits 0-1, and the
    borrow's "12 - 9" is the first operand itself for every operand of 10-19, so it is learnt as a copy
    ("40 - 6 = 36" for 40 - 36); here every step is a fact the ones' column states in range."""
    if (a < 10 and b < 10) or op not in ("add", "sub"):
        return plain(op, a, b)
    x, y, ta, tb = a % 10, b % 10, a // 10, b // 10
    if op == "add":
        steps = [f"{x} + {y} = {x + y}", f"{ta} + {tb} = {ta + tb}"]
        if x + y >= 10:
            steps.append(f"{ta + tb} + 1 = {ta + tb + 1}")
        result, sign = a + b, "+"
    else:
        steps = [f"10 - {y} = {10 - y}", f"{10 - y} + {x} = {10 - y + x}"] if x < y else [f"{x} - {y} = {x - y}"]
        steps.append(f"{ta} - {tb} = {ta - tb}")
        if x < y:
            steps.append(f"{ta - tb} - 1 = {ta - tb - 1}")
        result, sign = a - b, "-"
    steps.append(f"{a} {sign} {b} = {result}")
    return " " + ". ".join(steps) + f". The answer is {result}."


def places(op: str, a: int, b: int) -> str:
    """The "digits" working with its last step putting the two columns together by place value instead of
    restating the problem: "4 + 4 = 8. 2 + 2 = 4. 40 + 8 = 48.", "9 + 5 = 14. 3 + 3 + 1 = 7. 70 + 4 = 74.",
    "12 - 9 = 3. 3 - 2 - 1 = 0. 0 + 3 = 3."; plain where both operands are below 10. In "digits" the answer's
    first digit follows "24 + 24 = ", which training rows answer only for tens digits 0-2, and beyond them the
    policy writes the ones digit alone ("24 + 24 = 8"); here it is the tens' fact's result just stated, with a 0."""
    written = digits_working(op, a, b)
    if written is None:
        return plain(op, a, b)
    columns = ". ".join(written.split(". ")[:2])  # the ones' and the tens' facts
    result = a + b if op == "add" else a - b
    return f"{columns}. {result - result % 10} + {result % 10} = {result}. The answer is {result}."


def places_add(op: str, a: int, b: int) -> str:
    """ "places" for additions, "digits" for subtractions: "4 + 4 = 8. 2 + 2 = 4. 40 + 8 = 48.", "12 - 9 = 3. 3 -
    2 - 1 = 0. 32 - 29 = 3.". "places" mended additions without a carry on the development slice and lost
    subtractions, where its "0 + 3 = 3" replaced the restated problem (warm_start_rounds.txt section 11c-d)."""
    return places(op, a, b) if op == "add" else digits(op, a, b)


def carry_first(op: str, a: int, b: int) -> str:
    """The "digits" working with an addition's carry written first in the tens' fact, right after the ones' sum
    it comes from: "9 + 5 = 14. 1 + 3 + 3 = 7. 39 + 35 = 74." (subtraction as in "digits"); plain where both
    operands are below 10. In "digits" the carry comes last ("3 + 3 + 1"), and in range every carried tens'
    fact is "1 + 1 + 1" or "0 + 1 + 1", so "+ 1" after the tens digits reads as well as a copy of the second
    operand's tens digit as a carry: beyond the range some policies write "3 + 2 + 2 = 5" for 39 + 28. Here the
    carry is the tens digit of the sum just written, and the tens digits follow it."""
    written = digits_working(op, a, b)
    if written is None:
        return plain(op, a, b)
    if op != "add" or (a % 10 + b % 10) < 10:
        return written
    ta, tb = a // 10, b // 10
    return written.replace(f" {ta} + {tb} + 1 = ", f" 1 + {ta} + {tb} = ", 1)


def carry_always(op: str, a: int, b: int) -> str:
    """The "digits" working with the carry in every tens' fact of an addition, as the tens digit of the ones' sum
    just written: "9 + 5 = 14. 3 + 3 + 1 = 7. 39 + 35 = 74.", "4 + 3 = 7. 3 + 2 + 0 = 5. 34 + 23 = 57."
    (subtraction as in "digits"); plain where both operands are below 10. In range no addition with a tens digit
    of 2 carries (such an operand is 20), so "no '+ 1' after a 2" fits every training row, and past the range
    the carry is dropped ("3 + 3 = 6" for 39 + 35); here the third term is always there, a copy of a stated
    digit."""
    written = digits_working(op, a, b)
    if written is None or op != "add" or (a % 10 + b % 10) >= 10:
        return written or plain(op, a, b)
    ta, tb = a // 10, b // 10
    return written.replace(f" {ta} + {tb} = ", f" {ta} + {tb} + 0 = ", 1)


def carry_digit(op: str, a: int, b: int) -> str:
    """`carry_always` with the carry first, right after the ones' sum whose tens digit it is: "9 + 5 = 14. 1 + 3
    + 3 = 7. 39 + 35 = 74.", "4 + 3 = 7. 0 + 3 + 2 = 5. 34 + 23 = 57." (subtraction as in "digits")."""
    written = digits_working(op, a, b)
    if written is None or op != "add":
        return written or plain(op, a, b)
    ta, tb = a // 10, b // 10
    carry = (a % 10 + b % 10) // 10
    old = f" {ta} + {tb}" + (" + 1" if carry else "") + " = "
    return written.replace(old, f" {carry} + {ta} + {tb} = ", 1)


WORKINGS: dict[str, Callable[[str, int, int], str]] = {
    "plain": plain,
    "tens": tens,
    "ones": ones,
    "columns": columns,
    "ones_all": ones_all,
    "digits": digits,
    "ones_tens": ones_tens,
    "facts": facts,
    "places": places,
    "places_add": places_add,
    "carry_first": carry_first,
    "carry_always": carry_always,
    "carry_digit": carry_digit,
}

# Two-step phrasings for --chains: "add-sub" is the built-in task's kind, "add-add" the probe's own.
CHAIN_TEMPLATES = {
    "add-add": (
        "{n} has {a} {i}, gets {b} more and then {c} more. How many {i} does {n} have now?",
        "A box holds {a} {i}. {n} puts in {b} more and then {c} more. How many {i} are in the box now?",
        "What is {a} plus {b} plus {c}?",
    ),
    "add-sub": tuple(t for op, t in TEMPLATES if op == "add-sub"),
}


def chain_problems(n: int, seed: int, low: int, high: int, write: Callable[[str, int, int], str]) -> list[Record]:
    """`n` two-step problems, half "a + b + c" and half "a + b - c" (operands `low..high`), each step written
    by `write` and the steps chained into one working ("7 + 5 = 12. 0 + 1 + 1 = 2. 7 + 15 = 22. 2 + 2 = 4. 2 + 1
    = 3. 22 + 12 = 34. The answer is 34."). Every step that is an in-range equation is one of the training
    split (`problem_split`), so no validation or test equation is worked; the second step's other operand is in
    range, so no OOD equation (both operands above `high`) is either."""
    rng = random.Random(f"chains:{seed}")
    out: list[Record] = []
    seen: set[tuple[str, int, int, int]] = set()
    while len(out) < n:
        kind = ("add-add", "add-sub")[len(out) % 2]
        a, b = rng.randint(low, high), rng.randint(low, high)
        c = rng.randint(low, min(high, a + b))
        second = "add" if kind == "add-add" else "sub"
        steps = [("add", a, b), (second, a + b, c)]
        if (kind, min(a, b), max(a, b), c) in seen or any(
            x <= high and y <= high and problem_split(op, x, y) != "train" for op, x, y in steps
        ):
            continue
        seen.add((kind, min(a, b), max(a, b), c))
        result = a + b + c if kind == "add-add" else a + b - c
        worked = "".join(write(*step).split(" The answer is")[0] for step in steps)
        name, other = rng.sample(NAMES, 2)
        phrasing = rng.choice(CHAIN_TEMPLATES[kind])
        prompt = phrasing.format(n=name, m=other, i=rng.choice(ITEMS), a=a, b=b, c=c)
        out.append({"prompt": prompt, "completion": f"{worked} The answer is {result}.", "answer": str(result)})
    return out


# Campaign seeds whose OOD test slices the development slice (--ood) leaves out, problem by problem. Fixed, since the
# slice must stay the one the default was chosen on: another seed's OOD slice may share problems with it, and a
# claim for that seed counts only the items outside it (benchmarks/claim_by_problem.py --outside-development).
REPORTED_SEEDS = (0, 1, 2)


def ood_development(config: CampaignConfig, n: int) -> list[Record]:
    """`n` OOD problems (the OOD phrasings and operand range) none of which is a problem of the OOD test slice
    that a campaign of `config` scores under a reported seed (`REPORTED_SEEDS`), one phrasing per problem: a
    working is chosen on these, and the OOD test slices only report.

    Raises:
        ValueError: when fewer than `n` such problems exist.
    """
    reported = [config.model_copy(update={"seed": seed}) for seed in REPORTED_SEEDS]
    taken = {question_equation(p) for campaign in reported for p in campaign_prompts(campaign, "ood", 0)}
    chosen: list[Record] = []
    for p in split_draw(config, "ood", 20 * n, seed=1000):
        if question_equation(p) not in taken:
            taken.add(question_equation(p))
            chosen.append({**p, "id": f"ood-dev-{len(chosen)}"})
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} OOD problems lie outside the reported test slices, not {n}")
    return chosen[:n]


def equation(op: str, a: int, b: int) -> tuple[str, int, int]:
    """A one-step problem's equation, unordered where it commutes."""
    return (op, min(a, b), max(a, b))


def question_equation(row: Record) -> tuple[str, int, int]:
    """The equation of a built-in one-step question (`row["prompt"]`), read from its text.

    Raises:
        ValueError: for a question no one-step phrasing matches.
    """
    parsed = parse_problem(row["prompt"])
    if parsed is None:
        raise ValueError(f"not a built-in one-step question: {row['prompt']!r}")
    return equation(*parsed[:3])


def carries(op: str, a: int, b: int) -> bool:
    """Whether the ones carry (addition) or borrow (subtraction)."""
    return a % 10 + b % 10 >= 10 if op == "add" else a % 10 < b % 10


def rate(rows: list[Record]) -> dict[str, float]:
    """Accuracy, its Wilson 95% interval and the count."""
    hits = sum(1 for row in rows if row["correct"])
    low, high = wilson_interval(hits, len(rows))
    return {"accuracy": hits / len(rows), "ci_low": low, "ci_high": high, "items": len(rows)}


def credit(rows: list[Record]) -> str:
    """Each row's strict credit in order, "1" right and "0" wrong."""
    return "".join("1" if row["correct"] else "0" for row in rows)


def equations_first(problems: list[Record], n: int) -> list[Record]:
    """`n` of `problems`: the first of each equation in draw order, then the repeats in draw order."""
    seen: set[tuple[str, int, int]] = set()
    first: list[Record] = []
    repeats: list[Record] = []
    for p in problems:
        key = equation(p["op"], p["a"], p["b"])
        (repeats if key in seen else first).append(p)
        seen.add(key)
    return (first + repeats)[:n]


def main() -> int:
    """Train, score, append the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("working", choices=sorted(WORKINGS), help="how the gold rows write their working")
    parser.add_argument("--rows", type=int, default=300, help="gold rows drawn from the training split")
    parser.add_argument("--draw-seed", type=int, default=7, help="seed of the draw of training problems")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument(
        "--distinct", action="store_true", help="one row per equation (first drawn phrasing) before any repeat"
    )
    parser.add_argument(
        "--ood", type=int, default=0, help="also score N OOD problems outside the reported OOD test slices"
    )
    parser.add_argument(
        "--chains", type=int, default=0, help="replace the last N gold rows by two-step problems (chain_problems)"
    )
    parser.add_argument(
        "--train-max-operand",
        type=int,
        default=None,
        help="draw the gold rows' operands up to N instead of prompts.max_operand (validation and the OOD "
        "development slice stay the config's): how far a wider training range reaches",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="config overrides on configs/default.yaml")
    ns = parser.parse_args()
    set_torch_threads(ns.threads)
    config = load_config("default", ["evaluate.max_new_tokens=48", *ns.overrides])
    cfg = config.prompts
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    draw = partial(sample_problems, split="train", seed=ns.draw_seed, min_operand=cfg.min_operand)
    train_max = ns.train_max_operand or cfg.max_operand
    problems = draw(ns.rows, max_operand=train_max)
    if ns.distinct:
        problems = equations_first(draw(2000, max_operand=train_max), ns.rows)
    write = WORKINGS[ns.working]
    problems = problems[: len(problems) - ns.chains]
    examples = [
        {"prompt": cfg.template.format(prompt=p["prompt"]), "completion": write(p["op"], p["a"], p["b"])}
        for p in problems
    ]
    chains = chain_problems(ns.chains, ns.draw_seed, cfg.min_operand, cfg.max_operand, write)
    examples += [{"prompt": cfg.template.format(prompt=c["prompt"]), "completion": c["completion"]} for c in chains]
    assert all(shows_work(e["completion"]) for e in examples), "a gold row's working does not verify"
    validation = campaign_prompts(config, "validation", 0)
    development = ood_development(config, ns.ood) if ns.ood else []
    with tempfile.TemporaryDirectory() as scratch:
        trained = train_sft(base, None, examples, config.train, Path(scratch) / "adapter", seed=ns.seed)
        model, tokenizer = load_policy(base, str(Path(scratch) / "adapter"))
        started = time.perf_counter()
        score = partial(
            evaluate_greedy,
            HFSampler(model, tokenizer),
            template=cfg.template,
            max_new_tokens=config.evaluate.max_new_tokens,
            stop=config.generate.stop,
            batch_size=config.generate.batch_size,
        )
        scored, metrics = score(validation)
        ood_scored = score(development)[0] if development else []
    parsed = [parse_problem(row["prompt"]) for row in scored]
    by_carry = {
        name: rate([row for row, p in zip(scored, parsed, strict=True) if p and carries(p[0], p[1], p[2]) == flag])
        for name, flag in (("carry_or_borrow", True), ("no_carry", False))
    }
    result = {
        "working": ns.working,
        "commit": git_commit(),
        "rows": len(examples),
        "distinct_equations": len({(p["op"], p["a"], p["b"]) for p in problems}),
        "draw_seed": ns.draw_seed,
        "distinct_first": ns.distinct,
        **({"chains": ns.chains} if ns.chains else {}),
        **({"train_max_operand": train_max} if train_max != cfg.max_operand else {}),
        "overrides": ns.overrides,
        "seed": ns.seed,
        "train_seconds": round(trained["seconds"], 1),
        "steps": trained["steps"],
        "final_loss": trained["final_loss"],
        "eval_seconds": round(time.perf_counter() - started, 1),  # validation, and the OOD slice with --ood
        **{key: metrics[key] for key in ("accuracy", "ci_low", "ci_high", "items")},
        "shows_work": sum(shows_work(row["response"]) for row in scored) / len(scored),
        "by_carry": by_carry,
        **({"ood_development": rate(ood_scored)} if ood_scored else {}),
        "sample_responses": [row["response"] for row in scored[:5]],
        **({"ood_sample_responses": [row["response"] for row in ood_scored[:5]]} if ood_scored else {}),
        # Per item, in the order drawn ("1": right), for paired tests between probes on the same items.
        "validation_credit": credit(scored),
        **({"ood_credit": credit(ood_scored)} if ood_scored else {}),
    }
    append_line(RESULTS, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
