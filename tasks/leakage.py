"""Rows from outside the campaign's splits that share a problem with what it scores or trains on.

The splits are kept apart where they are made (`tasks.arithmetic.problem_split`, `tasks.prompts.check_prompt_sources`).
Two inputs join a campaign from elsewhere and are checked here, before anything runs:

- a judge's reference bank file (`judge.bank_path`). A judge that ranks against, calibrates on or trains on a
  scored prompt's labelled answer chooses training rows by what it learnt from a held-out item, so the item is no
  longer held out;
- an extra evaluation set (`evaluate.extra_sets`). A prompt that training may draw (a file-backed campaign's
  training row, or a built-in training problem in the campaign's reach) is not a held-out one.

A third input is the starting policy itself: with `start_from: champion` a round-0 policy trained by an earlier
campaign, on its own training prompts, which need not be this campaign's (`champion_overlaps`).

The built-in OOD slice is checked here too: it is drawn above `prompts.max_operand` without `problem_split`, so a
`prompts.level` or a curriculum whose operand ranges pass `max_operand` may train on its problems.

Rows are matched by problem, not only by text: a built-in question is its canonical problem
(`tasks.arithmetic.problem_key`), so "What is 3 plus 5?" in a bank matches "Ana has 5 pens and gets 3 more" in
test; any other prompt is matched `normalized` (case folded, whitespace collapsed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from configs.schema import CampaignConfig
from tasks.arithmetic import may_draw_for_training, parse_question, problem_key
from tasks.prompts import (
    describe,
    file_split,
    normalized,
    shared_rows,
    training_reach,
)
from tasks.records import Record

Key = Callable[[Mapping[str, Any]], str]  # what a row is matched by


def match_key(config: CampaignConfig) -> Key:
    """How a row is matched with another: the built-in task's canonical problem where the question parses, else
    the prompt `normalized`."""
    builtin = config.prompts.source == "arithmetic"

    def key(row: Mapping[str, Any]) -> str:
        prompt = str(row["prompt"])
        parsed = parse_question(prompt) if builtin else None
        return problem_key(parsed[0], *parsed[1]) if parsed else f"prompt:{normalized(prompt)}"

    return key


HELD_OUT = ("validation", "test", "ood")  # the campaign's fixed draws that it scores


def scored_sets(
    held_out: Mapping[str, list[Record]], extra_sets: Mapping[str, list[Record]]
) -> dict[str, list[Record]]:
    """What the campaign scores, by a name for messages: its fixed validation, test and OOD draws (`held_out`, by
    split: `HELD_OUT`) and every extra set (`extra_sets`, as `tasks.prompts.load_extra_sets` loads them), less
    the empty ones."""
    sets = {split: held_out[split] for split in HELD_OUT}
    extra = {f"evaluate.extra_sets {name!r}": rows for name, rows in extra_sets.items()}
    return {name: rows for name, rows in (sets | extra).items() if rows}


def bank_overlaps(
    config: CampaignConfig,
    numbered_bank: Sequence[tuple[int, Mapping[str, Any]]],
    scored: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[tuple[int, str]]:
    """Per scored set (`scored_sets`) that shares a problem with the reference bank (its rows with their lines in
    its file, `numbered_bank`), how many of the bank's rows do and the reason, naming their lines.

    Returns:
        (2, "2 row(s) (line 4: 'What is 3 plus 5?', ...) share a problem with the test prompts"), one per set,
        in the order of `scored`.
    """
    key, reasons = match_key(config), []
    bank, places = [row for _, row in numbered_bank], [f"line {line}" for line, _ in numbered_bank]
    for name, rows in scored.items():
        found = shared_rows(bank, rows, key)
        if found:
            reasons.append((len(found), f"{describe(found, bank, places)} share a problem with the {name} prompts"))
    return reasons


TrainRows = Callable[[], Sequence[Mapping[str, Any]]]  # a file-backed campaign's training split, read when called


def may_train_on(config: CampaignConfig, train_rows: TrainRows | None = None) -> Callable[[Mapping[str, Any]], bool]:
    """Whether training may draw a row's problem. A file-backed campaign: the row matches (`match_key`) one of its
    training rows (`train_rows`, the training file less any carved validation rows; read here when not given,
    `file_split`). The built-in task, whose draw is per round
    and level: the row's question parses, its kind and operands are within one of the campaign's ways of drawing
    (`tasks.prompts.training_reach`), and that draw would keep it in some order (`may_draw_for_training`: the
    problem, and each step of a two-step one in range, is a training-split problem)."""
    if config.prompts.source == "file":
        key = match_key(config)
        rows = train_rows() if train_rows is not None else file_split(config.prompts, "train")
        train = {key(row) for row in rows}

        def in_file(row: Mapping[str, Any]) -> bool:
            return key(row) in train

        return in_file
    cfg = config.prompts
    reach = training_reach(cfg)

    def drawable(row: Mapping[str, Any]) -> bool:
        parsed = parse_question(str(row["prompt"]))
        if parsed is None:
            return False
        op, operands, _ = parsed
        return any(may_draw_for_training(op, operands, ranges, cfg.min_operand, cfg.max_operand) for ranges in reach)

    return drawable


def extra_set_overlaps(
    config: CampaignConfig, extra_sets: Mapping[str, list[Record]], train_rows: TrainRows | None = None
) -> list[tuple[str, int, str]]:
    """(path, how many rows, reason) for each extra evaluation set sharing problems with what training may draw
    (`may_train_on`, with `train_rows`); `extra_sets` as `tasks.prompts.load_extra_sets` loaded them."""
    if not config.evaluate.extra_sets:
        return []
    trained = may_train_on(config, train_rows)
    what = "training prompts" if config.prompts.source == "file" else "problems the training draw may ask"
    out = []
    for extra in config.evaluate.extra_sets:
        rows = extra_sets[extra.name]
        found = [index for index, row in enumerate(rows) if trained(row)]
        if found:
            shared = describe(found, rows, [f"id {row['id']!r}" for row in rows])
            out.append((extra.path, len(found), f"{shared} of evaluate.extra_sets {extra.name!r} are {what}"))
    return out


def ood_overlap(config: CampaignConfig, ood_rows: Sequence[Mapping[str, Any]]) -> tuple[int, str] | None:
    """(how many, reason) when the built-in task's OOD slice (`ood_rows`) asks problems that training may draw
    (`may_train_on`: a `prompts.level` or curriculum whose operand ranges pass `prompts.max_operand`), else None."""
    if config.prompts.source != "arithmetic" or not ood_rows:
        return None
    trained = may_train_on(config)
    found = [index for index, row in enumerate(ood_rows) if trained(row)]
    if not found:
        return None
    cfg = config.prompts
    ceiling = max(high for ranges in training_reach(cfg) for _, high in ranges.values())
    how = f"prompts.level={cfg.level}" + (" with prompts.curriculum" if cfg.curriculum else "")
    shared = describe(found, ood_rows, [f"id {row['id']!r}" for row in ood_rows])
    return len(found), (
        f"{shared} of the OOD slice (operands {cfg.max_operand + 1}..{2 * cfg.max_operand}) are problems the "
        f"training draw may ask ({how} trains on operands up to {ceiling}, above prompts.max_operand="
        f"{cfg.max_operand}): raise prompts.max_operand to {ceiling}, or set prompts.ood_size: 0"
    )


def champion_overlaps(
    config: CampaignConfig, trained: Sequence[Mapping[str, Any]], scored: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[tuple[int, str]]:
    """Per scored set (`scored_sets`) asking problems the starting champion was trained on (`trained`, its rounds'
    rows, `tasks.champion_lineage.trained_prompts`), how many of the set's rows do and the reason, naming their ids.

    Returns:
        (3, "3 row(s) (id 'o4': 'What is 12 plus 7?', ...) of the ood prompts are problems it was trained on"),
        one per set, in the order of `scored`.
    """
    key, reasons = match_key(config), []
    for name, rows in scored.items():
        found = shared_rows(rows, trained, key)
        if found:
            shared = describe(found, rows, [f"id {row['id']!r}" for row in rows])
            reasons.append((len(found), f"{shared} of the {name} prompts are problems it was trained on"))
    return reasons
