"""The campaign's prompts: each split (train per round, fixed validation, test and OOD), few-shot examples, the task.

Prompts come from the built-in arithmetic task or from the user's files (read by `tasks.prompt_files`);
every source yields the same shape, `{"id", "prompt", "answer"}` (answer may be None), so the rest of
the loop never asks where prompts came from. How the policy is shown a prompt is decided here too: the
plain `prompts.template` behind an optional few-shot prefix, or (`prompts.chat`) the tokenizer's chat
template with the worked examples as earlier turns (`ChatFormat`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from configs.schema import CampaignConfig, PromptsConfig
from tasks.arithmetic import (
    CHAINED,
    LEVELS,
    SPLIT_ALIASES,
    parse_question,
    problem_key,
    sample_problems,
    worked_solution,
)
from tasks.curriculum import dynamic_draw, level_pass_rate, next_level, pass_rate_table
from tasks.judging.verifier import stated_answer
from tasks.layout import RESUMABLE, round_seed
from tasks.progress import emit
from tasks.prompt_files import PromptFileError, load_prompt_file, place_of, row_places
from tasks.records import DatasetRef, Record, read_records, sha256_file, write_lineage, write_records

if TYPE_CHECKING:  # transformers and MLflow are heavy; this module is imported by quick commands (validate, schema)
    from transformers import PreTrainedTokenizerBase

    from tasks.tracking import RoundContext

Message = dict[str, str]  # one chat turn: {"role": "user" | "assistant", "content": text}


def arithmetic_prompts(
    n: int,
    *,
    split: str,
    seed: int,
    min_operand: int,
    max_operand: int,
    operations: Sequence[str],
    level: int | None = None,
    working: str = "plain",
    two_step_share: float = 0.0,
) -> list[Record]:
    """`n` built-in arithmetic problems from one split, as prompt records.

    Args:
        n: How many distinct problems.
        split: "train", "validation", "test" or "ood"; no two share a problem.
        seed: Seed of the draw.
        min_operand: Smallest operand.
        max_operand: Largest operand.
        operations: Operations to use (of `tasks.arithmetic.OPERATIONS`).
        level: A difficulty level (`tasks.arithmetic.LEVELS`) replacing operations and range; None: those.
        working: How `solution` writes its working (`tasks.arithmetic.WORKINGS`); the draw is the same.
        two_step_share: The share of two-step additions and subtractions mixed into the draw.

    Returns:
        Records `{"id", "prompt", "answer", "solution"}` (and `level` when drawn at one); `solution` is a
        worked answer, shown by few-shot examples and used for gold rows.
    """
    problems = sample_problems(
        n,
        split=split,
        seed=seed,
        min_operand=min_operand,
        max_operand=max_operand,
        operations=operations,
        level=level,
        two_step_share=two_step_share,
    )
    extra = {"level": level} if level is not None else {}
    return [
        {"id": p["id"], "prompt": p["prompt"], "answer": p["answer"], "solution": worked_solution(p, working), **extra}
        for p in problems
    ]


def draw(records: Sequence[Record], n: int, *, seed: int) -> list[Record]:
    """A seeded sample without replacement of `min(n, len(records))` records, kept in their original order.

    Used to take fresh training prompts from a user file each round (seed derived from the round).

    Args:
        records: The pool to draw from.
        n: How many to draw; the whole pool when it has fewer.
        seed: Seed of the draw; the same seed and pool give the same records.

    Returns:
        Copies of the drawn records.

    Raises:
        ValueError: if `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    chosen = random.Random(seed).sample(range(len(records)), min(n, len(records)))
    return [dict(records[i]) for i in sorted(chosen)]


SPLITS = ("train", "validation", "test", "ood")
CARVED_SHARE = 0.2  # share of an answered training file's rows carved out as validation when no file is given
# CARVED_SHARE, as messages say it
CARVED_HOW = "a fifth of the answered rows chosen by a hash of each row's problem, or of its id where it has none"
SHOWN = 3  # shared rows a message names


def carved_for_validation(row: Record) -> bool:
    """Whether a training-file row belongs to the carved validation split: it has an answer and a stable hash
    of its `problem` (rows asking one problem in other words go to one side together), or of its id where it has
    none, falls in the first `CARVED_SHARE` (so the split never changes with seed, size or round)."""
    if row.get("answer") is None:
        return False
    problem = row.get("problem")
    name = f"validation:{row['id']}" if problem is None else f"validation-problem:{problem}"
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32
    return bucket < CARVED_SHARE


def file_split(cfg: PromptsConfig, split: str) -> list[Record]:
    """Every record of one split of a file-backed campaign, in file order.

    train: the training file less the carved validation rows (when there is no validation file);
    validation: `validation_path`, else the carved rows; test: `test_path`, else none; ood: none.

    Raises:
        PromptFileError: a bad file, or a validation/test file row without an answer.
    """
    split = SPLIT_ALIASES.get(split, split)
    if split == "train":
        rows = load_prompt_file(str(cfg.train_path))
        return rows if cfg.validation_path else [row for row in rows if not carved_for_validation(row)]
    if split == "validation":
        if cfg.validation_path:
            return load_prompt_file(str(cfg.validation_path), require_answer=True)
        return [row for row in load_prompt_file(str(cfg.train_path)) if carved_for_validation(row)]
    if split == "test":
        return load_prompt_file(str(cfg.test_path), require_answer=True) if cfg.test_path else []
    if split == "ood":
        return []
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")


def has_split(config: CampaignConfig, split: str) -> bool:
    """Whether the campaign has prompts in `split` (a file campaign without `test_path` has no test set;
    only the built-in task has an OOD slice, and only with `prompts.ood_size` > 0)."""
    cfg = config.prompts
    split = SPLIT_ALIASES.get(split, split)
    if split == "ood":
        return cfg.source == "arithmetic" and cfg.ood_size > 0
    if split == "test":
        return cfg.source == "arithmetic" or cfg.test_path is not None
    return True


def normalized(prompt: str) -> str:
    """A prompt as the overlap checks compare it: case folded, every run of whitespace one space, trimmed, so
    "tom has 5 apples.  How many" and "Tom has 5 apples. How many" are one prompt. Punctuation and numbers
    count: a rewording is not caught (the built-in task splits by problem for that)."""
    return " ".join(prompt.casefold().split())


def shared_rows(
    rows: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]
) -> list[int]:
    """Indices (in `rows`' order) of the rows whose `key` is also one of `others`'."""
    seen = {key(row) for row in others}
    return [index for index, row in enumerate(rows) if key(row) in seen]


def text_key(row: Mapping[str, Any]) -> str:
    """A row's prompt as the split overlap checks match it: `normalized`."""
    return normalized(str(row["prompt"]))


def shared_with(rows: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices (in `rows`' order) of the rows that ask a prompt of `others` (`text_key`) or, where both rows have
    a `problem` column, one of their problems in other words."""
    texts = {text_key(row) for row in others}
    problems = {row["problem"] for row in others if row.get("problem") is not None}
    return [
        index
        for index, row in enumerate(rows)
        if text_key(row) in texts or (row.get("problem") is not None and row["problem"] in problems)
    ]


def describe(indices: Sequence[int], rows: Sequence[Mapping[str, Any]], places: Sequence[str]) -> str:
    """The count and the first `SHOWN` of `rows[indices]`, each at its place (`places[i]`: "line 4", "id 'q7'") with
    the start of its prompt: "2 row(s) (line 4: 'What is 3 plus 5?', line 9: ...)"."""
    named = ", ".join(f"{places[i]}: {str(rows[i]['prompt'])[:60]!r}" for i in indices[:SHOWN])
    more = ", ..." if len(indices) > SHOWN else ""
    return f"{len(indices)} row(s) ({named}{more})"


def within_max_overlap(path: str, count: int, reason: str, allowed: int) -> str:
    """The note for `count` rows of the file at `path` shared with another set (`reason` says which), when at most
    `prompts.max_overlap` (`allowed`); more is refused.

    Raises:
        PromptFileError: naming the file, the reason and the setting, when `count` > `allowed`.
    """
    if count > allowed:
        raise PromptFileError(path, f"{reason}; at most prompts.max_overlap={allowed} allowed")
    return f"{path}: {reason}; allowed by prompts.max_overlap={allowed}"


# Each pair of splits the overlap check compares: (earlier, later); the later split's rows are reported.
OVERLAP_PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
SPLIT_NAMES = {"train": "training", "validation": "validation", "test": "test"}


def check_prompt_sources(cfg: PromptsConfig, *, max_chars: int | None = None) -> list[str]:
    """Read the configured prompt files once, so a bad file fails before any run is recorded.

    Also compares the splits pairwise (validation and test with training, test with validation): a prompt in
    both, compared `normalized` (case folded, whitespace collapsed and trimmed), or a `problem` both ask in other
    words (`shared_with`), is reported with the count and the first rows (`describe`), and more than
    `prompts.max_overlap` in any one pair is refused.

    Args:
        cfg: The prompts section.
        max_chars: Longest prompt allowed, in characters (None: any); a 10 MB prompt would otherwise ask
            the sampler for tens of GB.

    Returns:
        Notes for the user (prompts one split shares with another, within max_overlap).

    Raises:
        PromptFileError: naming the file, the line or row (or the prompt's id), and the reason.
    """
    if cfg.source != "file":
        return []
    paths = {"train": cfg.train_path, "validation": cfg.validation_path or cfg.train_path, "test": cfg.test_path}
    splits = {}
    for split, path in paths.items():
        splits[split] = file_split(cfg, split)
        if max_chars is not None:
            check_lengths(str(path), splits[split], max_chars)
    check_carved_splits(cfg, splits["train"], splits["validation"])
    notes = []
    for earlier, later in OVERLAP_PAIRS:
        rows = splits[later]
        shared = shared_with(rows, splits[earlier])
        if shared:
            named = describe(shared, rows, [f"id {row['id']!r}" for row in rows])
            reason = f"{named} of the {later} prompts are also {SPLIT_NAMES[earlier]} prompts"
            if len(shared) > len(shared_rows(rows, splits[earlier], text_key)):
                reason += " or ask one of their problems in other words (the 'problem' column)"
            notes.append(within_max_overlap(str(paths[later]), len(shared), reason, cfg.max_overlap))
    for split in ("train", "validation", "test"):
        check_repeated_answers(str(paths[split]), splits[split])
    for split in ("validation", "test"):
        rows = splits[split]
        first: dict[str, int] = {}
        repeats = [index for index, row in enumerate(rows) if first.setdefault(text_key(row), index) != index]
        if repeats:
            named = describe(repeats, rows, [f"id {row['id']!r}" for row in rows])
            notes.append(
                f"{paths[split]}: {named} of the {split} prompts repeat an earlier one; each is scored, and the "
                "statistics count a prompt once (a `problem` column groups rewordings too)"
            )
    return notes


def check_repeated_answers(path: str, rows: Sequence[Record]) -> None:
    """Refuse a file that asks one prompt (`text_key`) twice with two different answers: one label is wrong, so a
    scored set could never be answered right in full, and a training set would teach both.

    Raises:
        PromptFileError: naming both rows by line (or row) and id, and both answers.
    """
    first: dict[str, Record] = {}  # the first answered row of each prompt
    for row in rows:
        if row.get("answer") is None:
            continue
        earlier = first.setdefault(text_key(row), row)
        if str(row["answer"]) != str(earlier["answer"]):
            places = row_places(path)
            raise PromptFileError(
                path,
                f"{place_of(places, row['id'])} asks the prompt of {place_of(places, earlier['id'])} with the answer "
                f"{row['answer']!r}, not {earlier['answer']!r}: one of the two labels is wrong",
            )


def check_carved_splits(cfg: PromptsConfig, train: Sequence[Record], validation: Sequence[Record]) -> None:
    """Refuse a training file that, with no `prompts.validation_path`, leaves the validation split carved from it
    (`carved_for_validation`) or the training split empty: the campaign would crash scoring nothing, or train on
    nothing. Whether a small file works otherwise depends on its ids' hashes. `train` and `validation` are the file's
    splits (`file_split`).

    Raises:
        PromptFileError: naming `prompts.train_path=<file>` and the reason.
    """
    if cfg.validation_path:
        return
    where = f"prompts.train_path={cfg.train_path}"
    answered = sum(row.get("answer") is not None for row in train) + len(validation)
    if not answered:
        reason = (
            "no row has an 'answer', so no validation split can be carved from it (validation is scored against "
            "answers): set prompts.validation_path or add answers"
        )
        raise PromptFileError(where, reason)
    if not validation:
        raise PromptFileError(
            where,
            f"the validation split carved from it is empty (none of its {answered} answered rows falls in the carved "
            f"share, {CARVED_HOW}): set prompts.validation_path or add answered rows",
        )
    if not train:
        raise PromptFileError(where, all_carved(len(validation)))


def all_carved(answered: int, needs: str = "") -> str:
    """Why a training file whose `answered` rows all went to the carved validation split trains on none; `needs`
    says what asks for answered training rows ("" when the training split is empty)."""
    return (
        f"all {answered} answered rows went to the validation split carved from it ({CARVED_HOW}), so training has "
        f"none{f', and {needs}' if needs else ''}: set prompts.validation_path (then every row of this file trains) "
        "or add answered rows"
    )


def check_lengths(path: str, records: Sequence[Record], max_chars: int) -> None:
    """Raise PromptFileError for the first prompt longer than `max_chars` characters, at its line or row."""
    for record in records:
        if len(record["prompt"]) > max_chars:
            reason = (
                f"prompt {record['id']!r} is {len(record['prompt']):,} characters long, above the sane bound "
                f"of {max_chars:,}; set limits.allow_large=true to allow it"
            )
            line, unit = row_places(path).get(record["id"], (None, "line"))
            raise PromptFileError(path, reason, line, unit)


def load_extra_sets(config: CampaignConfig) -> dict[str, list[Record]]:
    """The records of every `evaluate.extra_sets` entry, by name (answers required on every row).

    Raises:
        PromptFileError: naming the file, the line or row, the reason and the set's name.
    """
    sets = {}
    for extra in config.evaluate.extra_sets:
        try:
            sets[extra.name] = load_prompt_file(extra.path, require_answer=True)
        except PromptFileError as error:
            reason = f"{error.reason} (evaluate.extra_sets {extra.name!r})"
            raise PromptFileError(error.path, reason, error.line, error.unit) from None
    return sets


def split_size(config: CampaignConfig, split: str) -> int:
    """How many prompts of `split` a round (train) or the campaign (validation, test, ood) uses."""
    cfg = config.prompts
    split = SPLIT_ALIASES.get(split, split)
    sizes = {"train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size, "ood": cfg.ood_size}
    return sizes[split]


def item_kind(config: CampaignConfig) -> Callable[[Mapping[str, Any]], str | None]:
    """What kind of problem a prompt row is, for the claim per kind (`tasks.report.kind_claims`): the built-in
    task's operation ("add", "sub", "mul", "add-sub", ...), read back from the question; a file row's `kind`
    column (None where a row has none)."""
    if config.prompts.source == "arithmetic":

        def operation(row: Mapping[str, Any]) -> str | None:
            parsed = parse_question(str(row["prompt"]))
            return parsed[0] if parsed else None

        return operation

    def column(row: Mapping[str, Any]) -> str | None:
        kind = row.get("kind")
        return None if kind is None or str(kind) == "" else str(kind)

    return column


def item_problem(config: CampaignConfig) -> Callable[[Mapping[str, Any]], str]:
    """Which problem a prompt row asks, for statistics that count each problem once (`tasks.stats`): for the
    built-in task, the canonical problem of a question it reads back (`tasks.arithmetic.problem_key`: "What is 3
    plus 5?" and "Ana has 5 pens and gets 3 more" are one problem); else the row's `problem` column when it has
    one, else its prompt's text (`text_key`, hashed: "prompt:<12 hex>"), so a prompt a file holds twice counts
    once."""
    builtin = config.prompts.source == "arithmetic"

    def problem(row: Mapping[str, Any]) -> str:
        parsed = parse_question(str(row["prompt"])) if builtin else None
        if parsed is not None:
            op, operands, _ = parsed
            return problem_key(op, *operands)
        given = row.get("problem")
        if given is None or str(given) == "":
            return "prompt:" + hashlib.sha256(text_key(row).encode()).hexdigest()[:12]
        return str(given)

    return problem


def campaign_prompts(config: CampaignConfig, split: str, round_index: int) -> list[Record]:
    """The prompts of one split for one round: validation, test and ood are fixed per campaign, training is
    drawn per round. A split the campaign does not have (`has_split`) gives no prompts.

    Args:
        config: The campaign.
        split: "train", "validation", "test" or "ood" ("heldout": deprecated alias of validation).
        round_index: The round (seeds the training draw).
    """
    cfg = config.prompts
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if not has_split(config, split):
        return []
    fixed = split != "train"
    seed = config.seed if fixed else round_seed(config.seed, round_index if cfg.fresh_each_round else 1)
    return split_draw(config, split, split_size(config, split), seed=seed)


def builtin_prompts(
    cfg: PromptsConfig, n: int, *, split: str, seed: int, level: int | None, two_step_share: float = 0.0
) -> list[Record]:
    """`arithmetic_prompts` at the campaign's operand range, operations and working."""
    return arithmetic_prompts(
        n,
        split=split,
        seed=seed,
        min_operand=cfg.min_operand,
        max_operand=cfg.max_operand,
        operations=cfg.operations,
        level=level,
        working=cfg.working,
        two_step_share=two_step_share,
    )


def training_reach(cfg: PromptsConfig) -> list[dict[str, tuple[int, int]]]:
    """Every kind of problem the built-in task may draw a training prompt of, with its operand range, one map per
    way of drawing: the campaign's operations and range (where every training draw is made without a `level`, and
    the few-shot examples always), with the two-step additions and subtractions when `two_step_share` is set; its
    `level`; with `curriculum`, every level from its first to the highest. A training draw keeps only problems
    whose `problem_split` is "train"."""
    kinds = [*cfg.operations, *(CHAINED if cfg.two_step_share else ())]
    plain: dict[str, tuple[int, int]] = {op: (cfg.min_operand, cfg.max_operand) for op in kinds}
    if cfg.level is None:  # a curriculum starts from a level (the schema asks for one)
        return [plain]
    last = len(LEVELS) if cfg.curriculum else cfg.level
    return [plain, *(dict(LEVELS[level - 1]) for level in range(cfg.level, last + 1))]


def split_draw(config: CampaignConfig, split: str, n: int, *, seed: int) -> list[Record]:
    """`n` prompts of one split drawn with `seed`: built-in problems (training at the campaign's `prompts.level`
    and `two_step_share`; validation, test and ood stay fixed across both), else a seeded draw of the split's file
    rows."""
    cfg = config.prompts
    if cfg.source == "arithmetic":
        if split != "train":
            return builtin_prompts(cfg, n, split=split, seed=seed, level=None)
        return builtin_prompts(cfg, n, split=split, seed=seed, level=cfg.level, two_step_share=cfg.two_step_share)
    return draw(file_split(cfg, split), n, seed=seed)


def gold_prompts(config: CampaignConfig, n: int) -> list[Record]:
    """The campaign's fixed draw of `n` training-split prompts for `select.gold_examples`: the same in every round
    (seeded by the campaign's `seed` alone), at the campaign's operand range and working; a file-backed campaign
    draws from its training rows (all of them when it has fewer). Validation, test and ood never supply one."""
    if n <= 0:
        return []
    # round 0 is never a training round, so this draw is the gold pool's own
    return split_draw(config, "train", n, seed=round_seed(config.seed, 0))


def curriculum_prompts(
    config: CampaignConfig, round_index: int, earlier: Sequence[Sequence[Record]]
) -> tuple[list[Record], dict[str, float]]:
    """A round's training prompts under `prompts.curriculum` (`tasks.curriculum`): the level from the earlier
    rounds' pass rates, prompts whose latest pass rate is strictly between 0 and 1 drawn again, fresh ones after.

    Args:
        config: The campaign.
        round_index: The round being drawn for (seeds the draws).
        earlier: The judged rows of the rounds just before it, oldest first.

    Returns:
        The prompts, and `curriculum/*` metrics without the prefix: `level` (arithmetic), `last_pass_rate` (the
        latest round's, at its level), `reused`, `dropped`, `fresh`.
    """
    cfg = config.prompts
    n = cfg.train_size
    table = pass_rate_table(earlier, round_index - len(earlier))
    seed = round_seed(config.seed, round_index)
    level = None
    if cfg.source == "arithmetic":
        level = next_level(table, cfg.level or 1, cfg.promote_level_at, len(LEVELS))
        seen = len({entry["id"] for entry in table})
        fresh = builtin_prompts(cfg, n + seen, split="train", seed=seed, level=level)
    else:
        fresh = file_split(cfg, "train")
    rows, metrics = dynamic_draw(table, fresh, n, seed=seed, level=level)
    rate = level_pass_rate(table)[1]
    metrics |= {"last_pass_rate": rate if rate is not None else math.nan}
    return rows, metrics | ({"level": float(level)} if level is not None else {})


def few_shot_prefix(config: CampaignConfig) -> str:
    """The few-shot prefix of a campaign: `prompts.few_shot` worked examples, each followed by a blank line.

    Examples come from the training split (never validation or test), drawn with a seed of their own so the
    prefix stays fixed for the whole campaign. Arithmetic problems show their worked solution; file rows
    show their `solution` column when present, else " The answer is {answer}.".

    Returns:
        The prefix text ("" when `prompts.few_shot` is 0); prompts rendered with `prompts.template` follow it.

    Raises:
        PromptFileError: if a file-backed campaign asks for examples but the training file has too few
            rows with an answer.
    """
    return "".join(f"{user}{solution}\n\n" for user, solution in few_shot_pairs(config))


def few_shot_rows(config: CampaignConfig) -> list[Record]:
    """The campaign's `prompts.few_shot` worked examples (see `few_shot_prefix`); [] when it is 0.

    Raises:
        PromptFileError: as `few_shot_prefix`.
    """
    cfg = config.prompts
    if cfg.few_shot == 0:
        return []
    if cfg.source == "arithmetic":
        # Under a working other than plain, the examples are problems that show it, more than one step (a pool
        # is drawn and the first such kept): three one-digit examples would never show how tens are worked.
        pool = cfg.few_shot if cfg.working == "plain" else 20 * cfg.few_shot
        # a seed apart from every round's training draw
        rows = builtin_prompts(cfg, pool, split="train", seed=config.seed + 7_919_000, level=None)
        if cfg.working != "plain":
            shown = [row for row in rows if row["solution"].count("=") > 1]
            rows = (shown + [row for row in rows if row not in shown])[: cfg.few_shot]
    else:
        answered = [row for row in file_split(cfg, "train") if row.get("answer") is not None]
        if len(answered) < cfg.few_shot:
            reason = f"prompts.few_shot={cfg.few_shot} needs that many rows with an answer; found {len(answered)}"
            raise PromptFileError(str(cfg.train_path), reason)
        rows = draw(answered, cfg.few_shot, seed=config.seed + 7_919_000)
    return rows


def few_shot_pairs(config: CampaignConfig) -> list[tuple[str, str]]:
    """(templated question, solution) per worked example of the campaign (see `few_shot_prefix`)."""
    cfg = config.prompts
    return [
        (cfg.template.format(prompt=row["prompt"]), row.get("solution") or stated_answer(row["answer"]))
        for row in few_shot_rows(config)
    ]


def few_shot_turns(config: CampaignConfig) -> list[Message]:
    """The worked examples as earlier chat turns (`prompts.chat`): the templated question as the user's turn,
    the solution (without its leading space) as the assistant's."""
    turns: list[Message] = []
    for user, solution in few_shot_pairs(config):
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": solution.strip()}]
    return turns


@dataclass(frozen=True)
class ChatFormat:
    """How `prompts.chat` shows prompts: the tokenizer's chat template over `turns` (few-shot examples, or
    none) and one user turn, ending with the generation prompt, so the model writes the assistant's reply."""

    tokenizer: PreTrainedTokenizerBase
    turns: tuple[Message, ...] = ()

    def render(self, messages: Sequence[Message], *, generation_prompt: bool) -> str:
        """`messages` through the chat template, as text the sampler encodes with the tokenizer's own special
        tokens: a BOS the template writes is dropped when the tokenizer adds one itself (else it would be doubled).

        Raises:
            ValueError: the tokenizer has no chat template (`prompts.chat`).
        """
        if not self.tokenizer.chat_template:
            raise ValueError("prompts.chat: the policy's tokenizer has no chat template")
        text = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=generation_prompt, tokenize=False
        )
        assert isinstance(text, str)  # tokenize=False on one conversation gives one string
        bos = self.tokenizer.bos_token
        adds_bos = bos is not None and self.tokenizer("")["input_ids"][:1] == [self.tokenizer.bos_token_id]
        return text[len(bos) :] if adds_bos and bos and text.startswith(bos) else text

    def inputs(self, texts: Sequence[str]) -> tuple[str, list[str]]:
        """(prefix, tails): `prefix + tails[i]` is the rendering of the turns and user text `texts[i]`.

        The prefix is the turns' own rendering when every full rendering starts with it (templates that add
        nothing between turns), so the sampler computes its KV cache once; else it is "".
        """
        full = [self.render([*self.turns, {"role": "user", "content": text}], generation_prompt=True) for text in texts]
        prefix = self.render(self.turns, generation_prompt=False) if self.turns else ""
        if not all(text.startswith(prefix) for text in full):
            prefix = ""
        return prefix, [text[len(prefix) :] for text in full]


def chat_format(config: CampaignConfig, tokenizer: PreTrainedTokenizerBase, *, few_shot: bool) -> ChatFormat | None:
    """The campaign's `ChatFormat` (with its worked examples as turns when `few_shot`), or None without
    `prompts.chat`."""
    if not config.prompts.chat:
        return None
    return ChatFormat(tokenizer, tuple(few_shot_turns(config)) if few_shot else ())


def chat_example(prompt: str, completion: str) -> dict[str, list[Message]]:
    """A TRL conversational prompt-completion example: TRL renders both with the chat template and computes
    the loss on the completion's tokens only (the assistant's reply and the template's end of turn)."""
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": completion}],
    }


def uses_few_shot(config: CampaignConfig, round_index: int) -> bool:
    """Whether round `round_index` samples behind the few-shot prefix (see `generate.few_shot_rounds`)."""
    limit = config.generate.few_shot_rounds
    return config.prompts.few_shot > 0 and (limit is None or round_index <= limit)


def source_files(config: CampaignConfig, split: str) -> dict[str, dict[str, str]]:
    """The file a split's prompts were read from, by its config field, with its path and content sha256 (for the
    lineage beside them); {} for the built-in task's splits, which are drawn, not read."""
    cfg = config.prompts
    if split.startswith("extra/"):
        name = split.removeprefix("extra/")
        field, path = f"evaluate.extra_sets.{name}", next(e.path for e in config.evaluate.extra_sets if e.name == name)
    elif cfg.source != "file" or split == "ood" or (split == "test" and not cfg.test_path):
        return {}
    elif split == "validation" and not cfg.validation_path:
        field, path = "prompts.train_path", str(cfg.train_path)  # carved from the training file
    else:
        field, path = f"prompts.{split}_path", str(getattr(cfg, f"{split}_path"))
    return {field: {"path": path, "sha256": sha256_file(path)}}


def capped_note(config: CampaignConfig, split: str, drawn: int) -> str | None:
    """The line saying a file-backed split gave fewer prompts than its size asks ("test: 40 prompts, all
    prompts.test_path holds (prompts.test_size=128)"), so a smaller set than configured is never taken silently;
    None otherwise."""
    if config.prompts.source != "file" or not has_split(config, split):
        return None
    split, cfg = SPLIT_ALIASES.get(split, split), config.prompts
    wanted = split_size(config, split)
    if drawn >= wanted:
        return None
    if split == "validation" and not cfg.validation_path:
        source = "all the rows carved from prompts.train_path"
    elif split == "train" and not cfg.validation_path:
        source = "all prompts.train_path holds less the rows carved for validation"
    else:
        source = f"all prompts.{split}_path holds"
    return f"{split}: {drawn} prompts, {source} (prompts.{split}_size={wanted})"


@task(name="prompts", **RESUMABLE)
def prompts_task(
    config: CampaignConfig, split: str, out_path: str, ctx: RoundContext, earlier: Sequence[DatasetRef] = ()
) -> DatasetRef:
    """Write the split's prompts for the context's round and record them as a dataset input.

    `split` is "train" (drawn per round), "validation", "test", "ood" or `extra/<name>` (an `evaluate.extra_sets`
    entry); all but train are fixed per campaign, written with its round-0 context. Under `prompts.curriculum`
    the training draw reads the `earlier` rounds' judged rows (`curriculum_prompts`) and logs `curriculum/*`.
    """
    extra = split.removeprefix("extra/") if split.startswith("extra/") else None
    if extra is not None:
        rows = load_extra_sets(config)[extra]
    elif split == "train" and config.prompts.curriculum:
        rows, metrics = curriculum_prompts(config, ctx.round, [read_records(ref) for ref in earlier])
        ctx.log_metrics({f"curriculum/{k}": v for k, v in metrics.items()})
    else:
        rows = campaign_prompts(config, split, ctx.round)
        capped = capped_note(config, split, len(rows))
        if capped:
            emit(capped)
    ref = write_records(out_path, rows)
    sources = source_files(config, split)
    facts = {"prompts": config.prompts, "split": split, "round": ctx.round, "seed": config.seed}
    write_lineage(Path(out_path), **facts, **({"sources": sources} if sources else {}))
    name = f"round-{ctx.round}-{split.replace('/', '-')}-prompts"
    ctx.log_dataset(ref, name=name, context="prompts" if split == "train" else split)
    return ref
