"""Write the word-problem prompt files (train, validation, test JSONL) from seeded templates and hand-written rows.

Written for selftrain by its authors, not taken from any benchmark. Each problem is one of several kinds
(shopping, change, ages, time, sharing, two-step stories, "how many more", rates), told in many phrasings
with many names and things. A problem's split is fixed by a stable hash of its computation (its worked
equations, the operands of + and * in either order), as tasks/arithmetic.py does, so the same computation never
lands in two splits whatever its story, kind or wording. Every row has
`prompt`, `answer` (an integer, as text), a worked `solution` in the house form (" 12 + 7 = 19. The answer
is 19."), and `kind` and `numbers` (which the prompt reader ignores). The test file
ends with hand-written rows in free styles (HAND_WRITTEN), not from the templates.

Run from anywhere: `python configs/data/word-problems/make.py` rewrites the three files beside it; the same
seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

SEED = 13
SIZES = {"train": 300, "validation": 100, "test": 80}  # test: plus the hand-written rows
SHARES = (("validation", 0.2), ("test", 0.2))  # the rest is train
HERE = Path(__file__).resolve().parent

NAMES = [
    "Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kiri", "Liam", "Maya", "Noor",
    "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Victor", "Wen", "Yusuf", "Zoe",
]  # fmt: skip
ITEMS = [
    ("a notebook", "a pen"), ("a sandwich", "a juice"), ("a ball", "a kite"), ("a hat", "a scarf"),
    ("a book", "a bookmark"), ("a plant", "a pot"), ("a ticket", "some popcorn"), ("a shirt", "a pair of socks"),
]  # fmt: skip
THINGS = ["stickers", "marbles", "apples", "cards", "shells", "coins", "pencils", "cookies", "stamps", "beads"]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("crate", "crates"), ("tray", "trays")]
RATES = [
    ("reads {a} pages every day", "How many pages does {n} read in {b} days?"),
    ("earns {a} dollars an hour", "How many dollars does {n} earn in {b} hours?"),
    ("walks {a} kilometres each day", "How many kilometres does {n} walk in {b} days?"),
    ("packs {a} parcels every hour", "How many parcels does {n} pack in {b} hours?"),
    ("saves {a} dollars each week", "How much money, in dollars, has {n} saved after {b} weeks?"),
]

Row = dict[str, object]
Maker = Callable[[random.Random], tuple[tuple[int, ...], str, str, int]]


def _shop(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    n, (x, y) = rng.choice(NAMES), rng.choice(ITEMS)
    prompt = rng.choice(
        [
            f"{n} buys {x} for {a} dollars and {y} for {b} dollars. How many dollars does {n} spend?",
            f"At the shop, {x} costs {a} dollars and {y} costs {b} dollars. What do both cost together, in dollars?",
            f"{n} paid {a} dollars for {x}, then {b} dollars for {y}. How much did {n} pay in total?",
            f"{x.capitalize()} is {a} dollars. {y.capitalize()} is {b} dollars. {n} buys one of each. "
            "What is the bill in dollars?",
        ]
    )
    return (min(a, b), max(a, b)), prompt, f" {a} + {b} = {a + b}.", a + b


def _change(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    price = rng.randint(2, 45)
    paid = rng.choice([p for p in (10, 20, 50) if p > price])
    n, (x, _) = rng.choice(NAMES), rng.choice(ITEMS)
    prompt = rng.choice(
        [
            f"{n} pays for {x} costing {price} dollars with a {paid}-dollar note. How much change does {n} get?",
            f"{x.capitalize()} costs {price} dollars. {n} hands over {paid} dollars. "
            "What change comes back, in dollars?",
            f"{n} had {paid} dollars and spent {price} of them on {x}. How many dollars are left?",
        ]
    )
    return (paid, price), prompt, f" {paid} - {price} = {paid - price}.", paid - price


def _age_older(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a, b = rng.randint(3, 40), rng.randint(2, 30)
    n, m = rng.sample(NAMES, 2)
    prompt = rng.choice(
        [
            f"{n} is {a} years old. {m} is {b} years older than {n}. How old is {m}?",
            f"{n} is {a} now. How old will {n} be in {b} years?",
            f"{m} was born {b} years before {n}, who is {a}. What is {m}'s age?",
        ]
    )
    return (a, b), prompt, f" {a} + {b} = {a + b}.", a + b


def _age_younger(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a = rng.randint(12, 60)
    b = rng.randint(2, a - 2)
    n, m = rng.sample(NAMES, 2)
    prompt = rng.choice(
        [
            f"{n} is {a} years old and {m} is {b} years younger. How old is {m}?",
            f"{n} is {a} today. How old was {n} {b} years ago?",
            f"{m} is {b} years younger than {n}. {n} is {a}. What is {m}'s age?",
        ]
    )
    return (a, b), prompt, f" {a} - {b} = {a - b}.", a - b


def _time(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a, b = rng.randint(5, 60), rng.randint(5, 60)
    n = rng.choice(NAMES)
    prompt = rng.choice(
        [
            f"A film lasts {a} minutes and the adverts before it {b} minutes. How many minutes is that altogether?",
            f"{n} spends {a} minutes on homework and then {b} minutes practising piano. How many minutes in all?",
            f"The bus ride takes {a} minutes and the walk after it takes {b} minutes. "
            "How long is the trip, in minutes?",
            f"{n} baked bread for {a} minutes, then left it to cool for {b} minutes. How many minutes passed?",
        ]
    )
    return (min(a, b), max(a, b)), prompt, f" {a} + {b} = {a + b}.", a + b


def _share(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    each, people = rng.randint(2, 12), rng.randint(2, 9)
    total, thing, n = each * people, rng.choice(THINGS), rng.choice(NAMES)
    prompt = rng.choice(
        [
            f"{n} shares {total} {thing} equally among {people} friends. How many {thing} does each friend get?",
            f"There are {total} {thing} to split evenly into {people} groups. How many {thing} go in each group?",
            f"{people} children divide {total} {thing} fairly. How many {thing} does each child receive?",
        ]
    )
    return (total, people), prompt, f" {total} / {people} = {each}.", each


def _more(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    small = rng.randint(2, 40)
    big = small + rng.randint(1, 30)
    n, m = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    prompt = rng.choice(
        [
            f"{n} has {small} {thing} and {m} has {big}. How many more {thing} does {m} have than {n}?",
            f"{m} collected {big} {thing}; {n} collected {small}. How many fewer did {n} collect?",
            f"A red jar holds {big} {thing} and a blue jar holds {small}. How many more are in the red jar?",
        ]
    )
    return (big, small), prompt, f" {big} - {small} = {big - small}.", big - small


def _rate(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a, b = rng.randint(2, 12), rng.randint(2, 9)
    n = rng.choice(NAMES)
    does, ask = rng.choice(RATES)
    prompt = f"{n} {does.format(a=a)}. {ask.format(n=n, b=b)}"
    return (a, b), prompt, f" {a} * {b} = {a * b}.", a * b


def _two_step_buy(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    a, b = rng.randint(5, 30), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    n, m = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    prompt = rng.choice(
        [
            f"{n} has {a} {thing}, gets {b} more from {m}, then gives away {c}. How many {thing} does {n} have now?",
            f"A shelf holds {a} {thing}. {b} are added and later {c} are taken. How many {thing} are on the shelf?",
            f"{n} starts with {a} {thing}. {m} brings {b} more, and {c} get lost. How many are left?",
        ]
    )
    return (a, b, c), prompt, f" {a} + {b} = {a + b}. {a + b} - {c} = {a + b - c}.", a + b - c


def _two_step_boxes(rng: random.Random) -> tuple[tuple[int, ...], str, str, int]:
    boxes, per, loose = rng.randint(2, 9), rng.randint(2, 12), rng.randint(1, 15)
    (box, box_plural), thing, n = rng.choice(CONTAINERS), rng.choice(THINGS), rng.choice(NAMES)
    prompt = rng.choice(
        [
            f"{n} has {boxes} {box_plural} with {per} {thing} in each, and {loose} loose {thing}. "
            f"How many {thing} does {n} have?",
            f"There are {boxes} {box_plural} of {thing}, {per} per {box}, plus {loose} more on the table. "
            f"How many {thing} are there in all?",
            f"Each {box} holds {per} {thing}. {n} fills {boxes} {box_plural} and has {loose} {thing} over. "
            f"How many {thing} did {n} start with?",
        ]
    )
    total = boxes * per + loose
    return (boxes, per, loose), prompt, f" {boxes} * {per} = {boxes * per}. {boxes * per} + {loose} = {total}.", total


KINDS: dict[str, Maker] = {
    "shopping": _shop,
    "change": _change,
    "age-older": _age_older,
    "age-younger": _age_younger,
    "time": _time,
    "sharing": _share,
    "how-many-more": _more,
    "rate": _rate,
    "two-step-add-sub": _two_step_buy,
    "two-step-mul-add": _two_step_boxes,
}

# Free-style problems written by hand for the test file: no template, other wordings and settings.
# (prompt, solution, answer); every solution states its computations so `shows_work` holds for it.
HAND_WRITTEN: list[tuple[str, str, int]] = [
    ("A baker made 48 rolls in the morning and sold 29 by noon. How many rolls were not sold by noon?",
     " 48 - 29 = 19.", 19),
    ("Our class has 14 girls and 13 boys. Today 3 children are ill at home. How many are in class?",
     " 14 + 13 = 27. 27 - 3 = 24.", 24),
    ("Grandma knits 3 scarves a week. How many scarves has she knitted after 8 weeks?", " 3 * 8 = 24.", 24),
    ("A train has 7 carriages with 12 seats each. How many seats does the train have?", " 7 * 12 = 84.", 84),
    ("I had 35 euros. A book cost me 17 euros. What do I have left, in euros?", " 35 - 17 = 18.", 18),
    ("Thirty-six chairs are set out in 4 equal rows. How many chairs are in each row?", " 36 / 4 = 9.", 9),
    ("The lift can carry 8 people at a time. It went up full 6 times. How many people rode it?",
     " 8 * 6 = 48.", 48),
    ("Mum is 41 and I am 12. How many years older than me is Mum?", " 41 - 12 = 29.", 29),
    ("A garden has 5 rows of 6 tulips and 9 roses by the gate. How many flowers are there?",
     " 5 * 6 = 30. 30 + 9 = 39.", 39),
    ("The score was 23 to 15. By how many points did the winners win?", " 23 - 15 = 8.", 8),
    ("A spider has 8 legs. How many legs do 7 spiders have between them?", " 8 * 7 = 56.", 56),
    ("Leo ran 12 laps on Monday and 15 on Tuesday. How many laps did he run over the two days?",
     " 12 + 15 = 27.", 27),
    ("A pizza is cut into 8 slices. Four friends share 2 pizzas equally. How many slices does each friend eat?",
     " 2 * 8 = 16. 16 / 4 = 4.", 4),
    ("The library had 120 books on a cart and put 45 back on the shelves. How many are still on the cart?",
     " 120 - 45 = 75.", 75),
    ("Tickets cost 6 pounds for a child. What do 5 child tickets cost, in pounds?", " 6 * 5 = 30.", 30),
    ("A bottle holds 750 millilitres. Sam pours out 250 millilitres. How many millilitres are left?",
     " 750 - 250 = 500.", 500),
    ("There were 17 birds on a wire. 9 flew off and then 4 landed. How many birds are on the wire?",
     " 17 - 9 = 8. 8 + 4 = 12.", 12),
    ("Pia is saving for a bike that costs 90 dollars. She has 58. How much more does she need?",
     " 90 - 58 = 32.", 32),
    ("A week has 7 days. How many days are there in 9 weeks?", " 7 * 9 = 63.", 63),
    ("The bakery packs muffins 6 to a box. How many boxes do 42 muffins fill?", " 42 / 6 = 7.", 7),
    ("A car park has 3 levels of 25 spaces. 18 spaces are empty. How many cars are parked?",
     " 3 * 25 = 75. 75 - 18 = 57.", 57),
    ("Nine pears weigh the same as three melons. How many melons weigh the same as 27 pears?",
     " 27 / 9 = 3. 3 * 3 = 9.", 9),
]  # fmt: skip


EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def computation(working: str) -> str:
    """A problem as its worked equations compute it, whatever its story, kind or wording: each step "a op b = c"
    in order, the operands of + and * sorted ("4 * 5 = 20" and "5 * 4 = 20" are one computation; so are a change
    story's "50 - 6 = 44" and an age story's)."""
    steps = []
    for a, op, b, c in EQUATION.findall(working):
        left, right = sorted((a, b), key=int) if op in "+*" else (a, b)
        steps.append(f"{left} {op} {right} = {c}")
    return "; ".join(steps)


def split_of(key: str) -> str:
    """The split of a problem, by a stable hash of its `computation` (not its wording, names or kind)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
    edge = 0.0
    for split, share in SHARES:
        edge += share
        if bucket < edge:
            return split
    return "train"


def _row(split: str, kind: str, numbers: tuple[int, ...], prompt: str, working: str, answer: int) -> Row:
    return {
        "id": f"{split}-{hashlib.sha256(prompt.encode()).hexdigest()[:12]}",
        "prompt": prompt,
        "answer": str(answer),
        "solution": f"{working} The answer is {answer}.",
        "kind": kind,
        "numbers": list(numbers),
    }


def build(seed: int = SEED) -> dict[str, list[Row]]:
    """The three splits' rows: kinds taken in turn, each problem in the split its `computation` hashes to until every
    split is full; a computation the hand-written test rows ask is never drawn (they are test rows)."""
    rng = random.Random(seed)
    rows: dict[str, list[Row]] = {split: [] for split in SIZES}
    seen = {computation(working) for _, working, _ in HAND_WRITTEN}
    kinds = list(KINDS.items())
    turn = 0
    while any(len(rows[s]) < n for s, n in SIZES.items()):
        kind, make = kinds[turn % len(kinds)]
        turn += 1
        numbers, prompt, working, answer = make(rng)
        key = computation(working)
        split = split_of(key)
        if key in seen or len(rows[split]) >= SIZES[split]:
            continue
        seen.add(key)
        rows[split].append(_row(split, kind, numbers, prompt, working, answer))
    for index, (prompt, working, answer) in enumerate(HAND_WRITTEN, start=1):
        hand = _row("test", "hand-written", (index,), prompt, working, answer)
        rows["test"].append(hand | {"id": f"test-hand-{index:02d}"})
    return rows


def main() -> None:
    """Write train.jsonl, validation.jsonl and test.jsonl beside this script."""
    for split, split_rows in build().items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in split_rows)
        (HERE / f"{split}.jsonl").write_text(text, encoding="utf-8")
        print(f"{split}: {len(split_rows)} rows")


if __name__ == "__main__":
    main()
