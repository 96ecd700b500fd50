"""A curriculum from history: per-prompt pass rates across rounds, DAPO's dynamic sampling, and levels.

Each round's judged samples give, per prompt, how many of its k samples the policy passed (`passed`:
correct in the strict form and, under `judge.require_work`, with right working). The table of these rows
across rounds (`pass_rate_table`) drives the next training draw (`dynamic_draw`): a prompt whose latest
pass rate is strictly between 0 and 1 still teaches something and is drawn again; one the policy always
or never solves gives no signal (DAPO's dynamic sampling, Yu et al. 2025) and is dropped; fresh prompts
fill the rest. On the built-in task the level rises once the latest round's pass rate at its level
reaches `prompts.promote_level_at` (`next_level`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tasks.records import Record

TABLE_FIELDS = ("id", "round", "k", "passed", "prompt", "answer", "level")


def passed(row: Record) -> bool:
    """Whether a judged sample counts as the policy passing its prompt: correct, and with right working
    when the round required it (`work` False fails; a row without `work` was not asked to show any)."""
    return bool(row.get("correct")) and row.get("work") is not False


def round_pass_rates(rows: Sequence[Record], round_index: int) -> list[Record]:
    """One table row per prompt of a round's judged samples (the policy's own; rows another source added,
    such as cascade or rationalized ones, and prompts without an answer are left out), in first-seen order.

    Returns:
        Rows `{"id", "round", "k", "passed", "prompt", "answer", "level"}` (`level` None outside a level draw).
    """
    table: dict[str, Record] = {}
    for row in rows:
        if row.get("source") is not None or row.get("answer") is None:
            continue
        entry = table.setdefault(
            row["id"],
            {
                "id": row["id"],
                "round": round_index,
                "k": 0,
                "passed": 0,
                "prompt": row["prompt"],
                "answer": row["answer"],
                "level": row.get("level"),
            },
        )
        entry["k"] += 1
        entry["passed"] += int(passed(row))
    return list(table.values())


def pass_rate_table(rounds: Sequence[Sequence[Record]], first_round: int = 1) -> list[Record]:
    """The pass-rate rows of consecutive rounds' judged samples, oldest first (`rounds[0]` is `first_round`)."""
    return [entry for offset, rows in enumerate(rounds) for entry in round_pass_rates(rows, first_round + offset)]


def latest(table: Sequence[Record]) -> dict[str, Record]:
    """Each prompt's row from the latest round that sampled it."""
    found: dict[str, Record] = {}
    for entry in sorted(table, key=lambda e: e["round"]):
        found[entry["id"]] = entry
    return found


def level_pass_rate(table: Sequence[Record]) -> tuple[int | None, float | None]:
    """(level, pass rate) of the latest round in the table at that round's level; (None, None) when empty."""
    if not table:
        return None, None
    last = max(entry["round"] for entry in table)
    rows = [entry for entry in table if entry["round"] == last]
    level = rows[-1]["level"]
    at_level = [entry for entry in rows if entry["level"] == level]
    samples = sum(entry["k"] for entry in at_level)
    return level, (sum(entry["passed"] for entry in at_level) / samples if samples else None)


def next_level(table: Sequence[Record], start: int, promote_at: float, highest: int) -> int:
    """The level the next round draws from: the latest round's level, one up (at most `highest`) when its pass
    rate at that level reached `promote_at`; `start` before any round at a level."""
    level, rate = level_pass_rate(table)
    if level is None:
        return start
    return min(level + 1, highest) if rate is not None and rate >= promote_at else level


def dynamic_draw(
    table: Sequence[Record], fresh: Sequence[Record], n: int, *, seed: int, level: int | None = None
) -> tuple[list[Record], dict[str, float]]:
    """`n` training prompts: those whose latest pass rate is strictly between 0 and 1 first (at `level`, when
    given), then fresh prompts never sampled before, seeded.

    Args:
        table: The pass-rate table of earlier rounds.
        fresh: Candidate prompts (`id`, `prompt`, `answer`, ...); any already in the table are skipped.
        n: Prompts wanted.
        seed: Seed of both draws.
        level: Only prompts last seen at this level are drawn again (None: any).

    Returns:
        The prompts (records `{"id", "prompt", "answer", ...}`, drawn-again ones first) and counts: `reused`,
        `dropped` (latest rate 0 or 1), `fresh`.
    """
    rng = random.Random(seed)
    rates = latest(table)
    informative = [
        {"id": e["id"], "prompt": e["prompt"], "answer": e["answer"], **({"level": level} if level else {})}
        for e in rates.values()
        if 0 < e["passed"] < e["k"] and (level is None or e["level"] == level)
    ]
    dropped = sum(1 for e in rates.values() if e["passed"] in (0, e["k"]))
    reused = [informative[i] for i in sorted(rng.sample(range(len(informative)), min(n, len(informative))))]
    unseen = [dict(row) for row in fresh if row["id"] not in rates]
    added = [unseen[i] for i in sorted(rng.sample(range(len(unseen)), min(n - len(reused), len(unseen))))]
    counts = {"reused": float(len(reused)), "dropped": float(dropped), "fresh": float(len(added))}
    return reused + added, counts
