"""The labelled reference bank of Meta Ranking: where references come from and which ones judge each target.

A reference is a (prompt, response) pair whose correctness is known: `{"prompt", "response", "correct"}`.
The bank is filled from verifier-labelled samples of earlier rounds (every row of their judged files with a
reference answer carries `correct`; the round flow passes those files as references, so the judge step's
cache key sees them) or from a user's JSONL file. Each target gets a fixed number
of references, balanced between correct and wrong ones, drawn with a seeded generator and never from the
target's own prompt (Meta Ranking compares across queries).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from configs.schema import JudgeConfig
from configs.schema_judge import REFERENCE_KINDS
from tasks.judging.verifier import is_correct
from tasks.records import DatasetRef, Record, read_records
from tasks.text_files import TextFileError, lone_surrogate, numbered_lines, read_text


class BankError(ValueError):
    """A reference bank that cannot be used; the message names the file and line (or judge.bank) and the problem."""


def load_bank_file(path: str | Path, config_field: str | None = None) -> list[Record]:
    """References from a JSONL file with `prompt`, `response` (strings) and `correct` (boolean) per line
    (`numbered_bank_file` without the line numbers).

    Raises:
        BankError: as `numbered_bank_file`.
    """
    return [row for _, row in numbered_bank_file(path, config_field)]


def numbered_bank_file(path: str | Path, config_field: str | None = None) -> list[tuple[int, Record]]:
    """(1-based line, reference) of each row of a JSONL file with `prompt`, `response` (strings) and `correct`
    (boolean) per line, in its order (blank lines hold none).

    Args:
        path: The JSONL file.
        config_field: The config field that names it (`judge.bank_path`), named with the path when it is no file.

    Raises:
        BankError: a missing file, a directory or other non-file, an unreadable file, a line that is not a JSON
            object, or a missing or mistyped field.
    """
    path = Path(path)
    if not path.exists():  # a labelled set (`judge-eval --labelled`) is read here too, and is no bank
        raise BankError(f"{path}: {'reference bank file' if config_field else 'file'} not found")
    named = f"{config_field}={path}" if config_field else str(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "a device, pipe or socket"
        raise BankError(f"{named}: not a file ({what}); expected a JSONL file")
    try:
        text = read_text(path)
    except TextFileError as error:
        raise BankError(f"{named}, line {error.line}: {error.reason}") from None
    except OSError as error:
        raise BankError(f"{named}: cannot be read ({error.strerror or error})") from None
    bank = []
    for number, line in numbered_lines(text):
        where = f"{named}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BankError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise BankError(f"{where}: expected a JSON object")
        for field, kind, wanted in (
            ("prompt", str, "text"),
            ("response", str, "text"),
            ("correct", bool, "true or false"),
        ):
            if field not in row:
                raise BankError(f"{where}: no {field!r} field; each row needs prompt, response and correct")
            if not isinstance(row[field], kind):
                raise BankError(f"{where}: {field!r} must be {wanted}, got {json.dumps(row[field])[:40]}")
            surrogate = lone_surrogate(row[field]) if kind is str else None
            if surrogate:
                raise BankError(f"{where}: field {field!r} holds a lone surrogate ({surrogate}), not text")
        if not row["prompt"].strip():
            raise BankError(f"{where}: 'prompt' is empty")
        bank.append((number, {"prompt": row["prompt"], "response": row["response"], "correct": row["correct"]}))
    return bank


def check_bank(bank: Sequence[Record], references: int, source: str) -> None:
    """Refuse a bank Meta Ranking cannot use: fewer labelled rows than `judge.references`, or only one label.

    Args:
        bank: The labelled rows.
        references: References asked per target (`judge.references`).
        source: Where the bank came from (a file path), named first in the error.

    Raises:
        BankError: one line naming `source` and the field.
    """
    if len(bank) < references:
        raise BankError(
            f"{source}: holds {len(bank)} labelled rows, fewer than judge.references ({references}) asks for"
        )
    check_both_labels(bank, source, "Meta Ranking needs both labels")


def check_both_labels(rows: Sequence[Mapping[str, Any]], source: str, why: str) -> None:
    """Raise `BankError` (one line naming `source`, then `why`) unless `rows` hold both a correct and a wrong one."""
    labels = {bool(row["correct"]) for row in rows}
    if len(labels) < 2:
        only = "correct" if labels == {True} else "wrong"
        raise BankError(f"{source}: field 'correct': every row is {only} ({len(rows)} of {len(rows)}); {why}")


def file_bank(cfg: JudgeConfig) -> list[Record]:
    """The bank of bank=file: `judge.bank_path`'s first `judge.bank_size` rows, checked by `check_bank`.

    Raises:
        BankError: one line naming the file: missing, malformed, too few rows or one label.
    """
    return [row for _, row in numbered_file_bank(cfg)]


def numbered_file_bank(cfg: JudgeConfig) -> list[tuple[int, Record]]:
    """`file_bank` with each row's line in `judge.bank_path` (what preflight's leak check names).

    Raises:
        As `file_bank`.
    """
    numbered = numbered_bank_file(str(cfg.bank_path), "judge.bank_path")[: cfg.bank_size]
    check_bank([row for _, row in numbered], cfg.references, str(cfg.bank_path))
    return numbered


def check_round_one_bank(cfg: JudgeConfig, answered: int, train_size: int, k: int, source: str) -> None:
    """Refuse a campaign whose first round cannot fill a reference judge's bank=rounds bank.

    Round 1 has no earlier rounds: its bank is at most `judge.bootstrap` of its own samples that have a reference
    answer, so at most min(`answered`, `train_size`) prompts x `k` samples.

    Args:
        cfg: The judge config (checked only for the reference kinds with bank=rounds).
        answered: Training prompts that have an `answer`.
        train_size: Prompts a round draws (`prompts.train_size`).
        k: Samples per prompt (`generate.k`).
        source: Where the prompts come from (the training file), named first in the error.

    Raises:
        BankError: one line naming `source`, the count and `judge.references`.
    """
    if cfg.kind not in REFERENCE_KINDS or cfg.bank != "rounds":
        return
    most = min(answered, train_size) * k
    if most < cfg.references:
        raise BankError(
            f"{source}: round 1's judge.bank=rounds holds at most {most} labelled rows ({min(answered, train_size)} "
            f"prompts with an 'answer' x generate.k={k} samples), fewer than judge.references ({cfg.references}) "
            "asks for"
        )


def split_halves_by_prompt(rows: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """Split rows in two by prompt (first half of the distinct prompts, in first-seen order, and the rest).

    Meta Ranking measures its references' weights on one half of its held-out rows and calibrates its
    threshold on the other, so no prompt informs both.
    """
    prompts = list(dict.fromkeys(row["prompt"] for row in rows))
    first = set(prompts[: len(prompts) // 2])
    return [r for r in rows if r["prompt"] in first], [r for r in rows if r["prompt"] not in first]


def bank_from_rounds(earlier: Sequence[DatasetRef], limit: int) -> list[Record]:
    """Verifier-labelled samples of earlier rounds' judged files (`earlier`, oldest round first), newest round
    first, at most `limit`.

    Rows without `correct` (prompts with no reference answer) are skipped, and a (prompt, response)
    pair seen before is not added twice.
    """
    bank: list[Record] = []
    seen: set[tuple[str, str]] = set()
    for judged in reversed(earlier):
        for row in read_records(judged):
            key = (row["prompt"], row["response"])
            if "correct" not in row or key in seen:
                continue
            seen.add(key)
            bank.append({"prompt": row["prompt"], "response": row["response"], "correct": bool(row["correct"])})
            if len(bank) == limit:
                return bank
    return bank


def build_bank(
    cfg: JudgeConfig, rows: Sequence[Record], earlier: Sequence[DatasetRef], seed: int
) -> tuple[list[Record], dict[str, Any]]:
    """The round's reference bank and where it came from.

    bank=file reads `bank_path`; bank=rounds reads the `earlier` rounds' judged files and, when they hold fewer
    than `bootstrap` references, adds `bootstrap` of this round's rows that have an answer, labelled by
    the verifier.

    Returns:
        (bank, facts) where facts say how many references came from where.

    Raises:
        BankError: one line naming the file (bank=file) or judge.bank=rounds and the counts, when the bank has
            fewer rows than `judge.references` or one label (bank=rounds: checked for the reference kinds only).
    """
    if cfg.bank == "file":
        bank = file_bank(cfg)
        return bank, {"bank_source": "file", "bank_path": cfg.bank_path, "from_file": len(bank)}
    bank = bank_from_rounds(earlier, cfg.bank_size)
    facts: dict[str, Any] = {"bank_source": "rounds", "from_rounds": len(bank), "bootstrapped": 0}
    if len(bank) < cfg.bootstrap:
        answered = [row for row in rows if row.get("answer") is not None]
        chosen = random.Random(seed).sample(answered, min(cfg.bootstrap, len(answered)))
        extra = [
            {
                "prompt": r["prompt"],
                "response": r["response"],
                "correct": is_correct(r["response"], r["answer"], cfg.answer_pattern),
            }
            for r in chosen
        ]
        facts["bootstrapped"] = len(extra)
        bank = bank + extra[: max(0, cfg.bank_size - len(bank))]
    if cfg.kind in REFERENCE_KINDS:  # only the round's data decides these: refuse it before any comparison
        check_bank(
            bank,
            cfg.references,
            f"judge.bank=rounds ({facts['from_rounds']} rows from earlier rounds, "
            f"{len(bank) - facts['from_rounds']} of this round's samples)",
        )
    return bank, facts


def draw_references(bank: Sequence[Record], n: int, rng: random.Random, exclude_prompt: str | None = None) -> list[int]:
    """Indices of `n` references for one target: half correct and half wrong, the odd one by coin toss.

    When a label has too few usable references, the other label fills the gap; when the bank has
    fewer than `n` usable references in all, all of them are returned.

    Args:
        bank: The references.
        n: How many to draw.
        rng: The seeded generator (consumed).
        exclude_prompt: Skip references with this prompt (the target's own query).
    """
    usable = [i for i, ref in enumerate(bank) if ref["prompt"] != exclude_prompt]
    right = [i for i in usable if bank[i]["correct"]]
    wrong = [i for i in usable if not bank[i]["correct"]]
    want_right = n // 2 + (n % 2 if rng.random() < 0.5 else 0)
    take_right = min(len(right), max(want_right, n - len(wrong)))
    take_wrong = min(len(wrong), n - take_right)
    return sorted(rng.sample(right, take_right) + rng.sample(wrong, take_wrong))


def assign_references(targets: Sequence[Record], bank: Sequence[Record], n: int, seed: int) -> list[list[int]]:
    """Per target (in order), the bank indices of its `n` references; the same seed gives the same draw."""
    rng = random.Random(seed)
    return [draw_references(bank, n, rng, exclude_prompt=row["prompt"]) for row in targets]


def draw_panel(bank: Sequence[Record], size: int, seed: int) -> list[Record]:
    """The round's panel: `size` references drawn from the bank, balanced by label (all when size is 0).

    Targets draw their references from the panel, so each panel reference is compared with many targets
    and its KV cache is computed once for all of them.
    """
    if size == 0 or size >= len(bank):
        return list(bank)
    return [bank[i] for i in draw_references(bank, size, random.Random(seed))]


def split_dev(bank: Sequence[Record], dev_size: int, seed: int) -> tuple[list[Record], list[Record]]:
    """Split the bank into (references, dev) with `dev_size` dev rows drawn by `seed` (none if too small).

    The dev rows are scored with the remaining references to calibrate the threshold, so no reference
    ever judges itself. At least half the bank stays as references.
    """
    size = min(dev_size, len(bank) // 2)
    order = list(range(len(bank)))
    random.Random(seed).shuffle(order)
    dev = set(order[:size])
    return [r for i, r in enumerate(bank) if i not in dev], [r for i, r in enumerate(bank) if i in dev]
