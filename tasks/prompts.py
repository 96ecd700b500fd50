"""Loading prompts: a user's JSONL, CSV or Parquet file, or the built-in arithmetic task, as prompt records.

Every source yields the same shape, `{"id", "prompt", "answer"}` (answer may be None), so the rest of
the loop never asks where prompts came from. A bad file fails here, once, with a message that names
the file, the line or row and the reason, instead of as a KeyError three tasks later.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from prefect import task

from configs.schema import CampaignConfig, PromptsConfig
from tasks.arithmetic import sample_problems
from tasks.layout import RESUMABLE, round_seed
from tasks.records import DatasetRef, Record, write_lineage, write_records
from tasks.tracking import RoundContext

JSONL_SUFFIXES = (".jsonl", ".json")
SUFFIXES = (*JSONL_SUFFIXES, ".csv", ".parquet")


class PromptFileError(ValueError):
    """A prompt file that cannot be used, with the file, the place in it and the reason.

    The message reads `path, line 7: reason` (JSONL lines and CSV/Parquet data rows are 1-based; a CSV
    header is not a row) or `path: reason` when the problem is the whole file.

    Attributes:
        path: The file as the caller named it.
        reason: What is wrong, in a few words.
        line: The 1-based line (JSONL) or data row (CSV, Parquet), or None for a whole-file problem.
        unit: "line" or "row", the word used for `line` in the message.
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None, unit: str = "line") -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.unit = unit
        where = self.path if line is None else f"{self.path}, {unit} {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect pickles a failed task's exception; the default would rebuild it from the message alone.
        return (type(self), (self.path, self.reason, self.line, self.unit))


class _RowError(ValueError):
    """A reason a single row is unusable; `load_prompt_file` adds the file and the line or row."""


def load_prompt_file(path: str | Path, *, require_answer: bool = False) -> list[Record]:
    """Read prompt records from a JSONL (`.jsonl`/`.json`, one object per line), CSV or Parquet file.

    Each row needs a non-empty string `prompt`. `answer` is optional: any single value becomes a string
    (integral floats lose their `.0`), while null, NaN and empty become None. The id is the row's `id`
    when it has one, else `<file stem>-<0-based row index>`.

    Args:
        path: The prompt file; its extension picks the format.
        require_answer: Treat a row without an answer as an error (validation, test and extra sets are scored
            against answers).

    Returns:
        Records `{"id", "prompt", "answer"}` in file order.

    Raises:
        PromptFileError: if the file is missing, of an unsupported type, empty or malformed, or a row
            is unusable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PromptFileError(path, f"unsupported file type {suffix or '(none)'!r} (use {', '.join(SUFFIXES)})")
    if not path.exists():
        raise PromptFileError(path, "file not found")
    if not path.is_file():
        raise PromptFileError(path, "not a file")
    if path.stat().st_size == 0:
        raise PromptFileError(path, "empty file")

    unit = "line" if suffix in JSONL_SUFFIXES else "row"
    if suffix in JSONL_SUFFIXES:
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    else:
        rows = _read_parquet(path)
    if not rows:
        raise PromptFileError(path, "no rows")
    if require_answer and not any(isinstance(raw, dict) and "answer" in raw for _, raw in rows):
        raise PromptFileError(path, "no 'answer' column (this file is scored against answers)")

    records: list[Record] = []
    first_seen: dict[str, int] = {}
    for index, (number, raw) in enumerate(rows):
        try:
            record = _to_record(raw, default_id=f"{path.stem}-{index}", require_answer=require_answer)
        except _RowError as error:
            raise PromptFileError(path, str(error), number, unit) from None
        # Later steps group samples by id, so two prompts sharing one would silently merge.
        if record["id"] in first_seen:
            reason = f"duplicate id {record['id']!r} (first at {unit} {first_seen[record['id']]})"
            raise PromptFileError(path, reason, number, unit)
        first_seen[record["id"]] = number
        records.append(record)
    return records


def load_response_file(path: str | Path) -> list[Record]:
    """Read scored-to-be rows from a JSONL, CSV or Parquet file: `prompt`, `response` and `answer` on every row.

    Generations may come from anywhere (another system, another model); this reads them for
    `selftrain score`. Other columns are kept as they are.

    Returns:
        Records `{"id", "prompt", "response", "answer", ...}` in file order.

    Raises:
        PromptFileError: naming the file, the line or row, and the reason (a missing column, an empty
            prompt, a response that is not text, a row without an answer).
    """
    path = Path(path)
    records = load_prompt_file(path, require_answer=True)  # checks the file, prompt, answer and ids
    suffix = path.suffix.lower()
    unit = "line" if suffix in JSONL_SUFFIXES else "row"
    rows = _read_jsonl(path) if suffix in JSONL_SUFFIXES else [(i, row) for i, row in _tabular_rows(path)]
    out = []
    for record, (number, raw) in zip(records, rows, strict=True):
        response = raw.get("response")
        if not isinstance(response, str):
            found = "no 'response'" if response is None else f"'response' must be a string, got {_json_type(response)}"
            raise PromptFileError(path, found, number, unit)
        extra = {k: v for k, v in raw.items() if k not in ("id", "prompt", "answer", "response")}
        out.append({**extra, **record, "response": response})
    return out


def _tabular_rows(path: Path) -> list[tuple[int, Any]]:
    return _read_csv(path) if path.suffix.lower() == ".csv" else _read_parquet(path)


def arithmetic_prompts(
    n: int, *, split: str, seed: int, min_operand: int, max_operand: int, operations: Sequence[str]
) -> list[Record]:
    """`n` built-in arithmetic problems from one split, as prompt records.

    Args:
        n: How many distinct problems.
        split: "train", "validation", "test" or "ood"; no two share a problem.
        seed: Seed of the draw.
        min_operand: Smallest operand.
        max_operand: Largest operand.
        operations: Operations to use ("add", "sub").

    Returns:
        Records `{"id", "prompt", "answer", "solution"}`; `solution` is a worked answer used to warm up
        the tiny model.
    """
    problems = sample_problems(
        n, split=split, seed=seed, min_operand=min_operand, max_operand=max_operand, operations=operations
    )
    return [{"id": p["id"], "prompt": p["prompt"], "answer": p["answer"], "solution": p["solution"]} for p in problems]


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


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line.

    Parsed with `json` rather than `datasets`: this names the bad line, and Arrow's column typing would
    turn an integer answer into a float (12 -> 12.0) when another row's answer is a float.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors on Windows prepend a byte-order mark
    except UnicodeDecodeError as error:
        raise PromptFileError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    rows = []
    # Split on "\n" only: str.splitlines would also break inside strings holding U+2028 and similar.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise PromptFileError(path, f"not valid JSON ({error.msg})", number) from None
    return rows


def _read_csv(path: Path) -> list[tuple[int, Any]]:
    """(1-based data row number, row dict) for each CSV row; every cell is read as text."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            # `datasets` reports a header-only file as 'Instruction "train" corresponds to no data!'.
            has_rows = any(any(cell.strip() for cell in cells) for cells in reader)
    except UnicodeDecodeError as error:
        raise PromptFileError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    _check_columns(path, header)
    if not has_rows:
        return []
    # All-string features keep cells as written ("012" stays "012"); keep_default_na=False keeps "NA" or
    # "null" answers as text, so only an empty cell means "no answer".
    features = datasets.Features({name: datasets.Value("string") for name in header})
    rows = _load_with_datasets(path, "csv", features=features, keep_default_na=False)
    return list(enumerate(rows, start=1))


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    """(1-based row number, row dict) for each Parquet row."""
    try:
        # Only the footer is read; this gives a clear error for a non-Parquet file and the column check
        # before `datasets` logs its own schema errors.
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise PromptFileError(path, f"not a valid Parquet file ({_root_message(error)})") from None
    _check_columns(path, parquet.schema_arrow.names)
    if parquet.metadata.num_rows == 0:
        return []
    return list(enumerate(_load_with_datasets(path, "parquet"), start=1))


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    if not columns:
        raise PromptFileError(path, "no header row")
    duplicates = sorted({name for name in columns if list(columns).count(name) > 1})
    if duplicates:
        raise PromptFileError(path, f"duplicate column {duplicates[0]!r}")
    if "prompt" not in columns:
        raise PromptFileError(path, f"no 'prompt' column (columns: {', '.join(columns)})")


def _load_with_datasets(path: Path, builder: str, **options: Any) -> list[dict[str, Any]]:
    """Rows of a file read by a packaged `datasets` builder, leaving nothing in the user's HF cache.

    The builder's Arrow cache goes to a temporary directory that is removed once the rows are in memory,
    so repeated loads neither grow `~/.cache/huggingface` nor reuse a stale cache of an edited file.
    Packaged builders ("csv", "parquet") run locally, so no network is needed.
    """
    with tempfile.TemporaryDirectory(prefix="selftrain-prompts-") as cache_dir, _quiet_progress_bars():
        try:
            dataset = datasets.load_dataset(
                builder, data_files=str(path.resolve()), split="train", cache_dir=cache_dir, **options
            )
            return dataset.to_list()
        except Exception as error:  # datasets wraps pandas/pyarrow errors; the innermost one says what is wrong
            raise PromptFileError(path, f"not valid {builder.upper()} ({_root_message(error)})") from error


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hide the "Generating train split" bar of a small local read, restoring the caller's setting."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _root_message(error: BaseException) -> str:
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return message[:200]


def _to_record(raw: Any, *, default_id: str, require_answer: bool) -> Record:
    if not isinstance(raw, dict):
        raise _RowError(f"expected an object, got {_json_type(raw)}")
    if "prompt" not in raw or raw["prompt"] is None:
        raise _RowError("no 'prompt'")
    prompt = raw["prompt"]
    if not isinstance(prompt, str):
        raise _RowError(f"'prompt' must be a string, got {_json_type(prompt)}")
    if not prompt.strip():
        raise _RowError("empty 'prompt'")
    answer = _scalar_text(raw.get("answer"), "answer")
    if require_answer and answer is None:
        raise _RowError("no 'answer' (this file needs one on every row)")
    row_id = _scalar_text(raw.get("id"), "id")
    return {"id": row_id if row_id is not None else default_id, "prompt": prompt, "answer": answer}


def _scalar_text(value: Any, field: str) -> str | None:
    """A single value as text; None for null, NaN and empty text."""
    if value is None:
        return None
    if isinstance(value, dict | list | tuple):
        raise _RowError(f"{field!r} must be a single value, got {_json_type(value)}")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        # pandas and Parquet store an integer column with gaps as float64, so 12 arrives as 12.0.
        if value.is_integer():
            return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _json_type(value: Any) -> str:
    names = {
        dict: "object",
        list: "array",
        tuple: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
    }
    return names.get(type(value), "number" if isinstance(value, int | float) else type(value).__name__)


SPLITS = ("train", "validation", "test", "ood")
# Deprecated: the flows still ask for "heldout", which now means validation. Remove once they are rewired.
SPLIT_ALIASES = {"heldout": "validation"}
CARVED_SHARE = 0.2  # share of an answered training file's rows carved out as validation when no file is given
OVERLAP_IDS_SHOWN = 5


def carved_for_validation(row: Record) -> bool:
    """Whether a training-file row belongs to the carved validation split: it has an answer and a stable hash
    of its id falls in the first `CARVED_SHARE` (so the split never changes with seed, size or round)."""
    if row.get("answer") is None:
        return False
    bucket = int.from_bytes(hashlib.sha256(f"validation:{row['id']}".encode()).digest()[:4], "big") / 2**32
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


def overlap(train: Sequence[Record], other: Sequence[Record]) -> list[str]:
    """Ids (in `other`'s order) of `other`'s rows whose prompt, trimmed, is also a training prompt."""
    seen = {row["prompt"].strip() for row in train}
    return [row["id"] for row in other if row["prompt"].strip() in seen]


def check_prompt_sources(cfg: PromptsConfig, *, max_chars: int | None = None) -> list[str]:
    """Read the configured prompt files once, so a bad file fails before any run is recorded.

    Also compares the validation and test prompts with the training prompts: any shared prompt is reported
    (count and first ids), and more than `prompts.max_overlap` is refused.

    Args:
        cfg: The prompts section.
        max_chars: Longest prompt allowed, in characters (None: any); a 10 MB prompt would otherwise ask
            the sampler for tens of GB.

    Returns:
        Notes for the user (validation or test prompts shared with training, within max_overlap).

    Raises:
        PromptFileError: naming the file, the line or row (or the prompt's id), and the reason.
    """
    if cfg.source != "file":
        return []
    train = file_split(cfg, "train")
    paths = {"train": cfg.train_path, "validation": cfg.validation_path or cfg.train_path, "test": cfg.test_path}
    notes = []
    for split in ("train", "validation", "test"):
        records = train if split == "train" else file_split(cfg, split)
        path = str(paths[split])
        if max_chars is not None:
            check_lengths(path, records, max_chars)
        if split == "train" or not records:
            continue
        shared = overlap(train, records)
        if shared:
            first = ", ".join(repr(i) for i in shared[:OVERLAP_IDS_SHOWN]) + (", ..." if len(shared) > 5 else "")
            reason = f"{len(shared)} {split} prompt(s) also in the training prompts (first ids: {first})"
            if len(shared) > cfg.max_overlap:
                raise PromptFileError(path, f"{reason}; at most prompts.max_overlap={cfg.max_overlap} allowed")
            notes.append(f"{path}: {reason}; allowed by prompts.max_overlap={cfg.max_overlap}")
    return notes


def check_lengths(path: str, records: Sequence[Record], max_chars: int) -> None:
    """Raise PromptFileError for the first prompt longer than `max_chars` characters."""
    for record in records:
        if len(record["prompt"]) > max_chars:
            reason = (
                f"prompt {record['id']!r} is {len(record['prompt']):,} characters long, above the sane bound "
                f"of {max_chars:,}; set limits.allow_large=true to allow it"
            )
            raise PromptFileError(path, reason)


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
    n = split_size(config, split)
    seed = config.seed if fixed else round_seed(config.seed, round_index if cfg.fresh_each_round else 1)
    if cfg.source == "arithmetic":
        return arithmetic_prompts(
            n,
            split=split,
            seed=seed,
            min_operand=cfg.min_operand,
            max_operand=cfg.max_operand,
            operations=cfg.operations,
        )
    return draw(file_split(cfg, split), n, seed=seed)


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
    cfg = config.prompts
    if cfg.few_shot == 0:
        return ""
    if cfg.source == "arithmetic":
        rows = arithmetic_prompts(
            cfg.few_shot,
            split="train",
            seed=config.seed + 7_919_000,  # apart from every round's training draw
            min_operand=cfg.min_operand,
            max_operand=cfg.max_operand,
            operations=cfg.operations,
        )
    else:
        answered = [row for row in file_split(cfg, "train") if row.get("answer") is not None]
        if len(answered) < cfg.few_shot:
            reason = f"prompts.few_shot={cfg.few_shot} needs that many rows with an answer; found {len(answered)}"
            raise PromptFileError(str(cfg.train_path), reason)
        rows = draw(answered, cfg.few_shot, seed=config.seed + 7_919_000)
    shots = []
    for row in rows:
        solution = row.get("solution") or f" The answer is {row['answer']}."
        shots.append(cfg.template.format(prompt=row["prompt"]) + solution + "\n\n")
    return "".join(shots)


def uses_few_shot(config: CampaignConfig, round_index: int) -> bool:
    """Whether round `round_index` samples behind the few-shot prefix (see `generate.few_shot_rounds`)."""
    limit = config.generate.few_shot_rounds
    return config.prompts.few_shot > 0 and (limit is None or round_index <= limit)


@task(name="prompts", **RESUMABLE)
def prompts_task(config: CampaignConfig, split: str, out_path: str, ctx: RoundContext) -> DatasetRef:
    """Write the split's prompts for the context's round and record them as a dataset input.

    `split` is "train" (drawn per round), "validation", "test", "ood" or `extra/<name>` (an `evaluate.extra_sets`
    entry); all but train are fixed per campaign, written with its round-0 context.
    """
    extra = split.removeprefix("extra/") if split.startswith("extra/") else None
    rows = load_extra_sets(config)[extra] if extra is not None else campaign_prompts(config, split, ctx.round)
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), prompts=config.prompts, split=split, round=ctx.round, seed=config.seed)
    name = f"round-{ctx.round}-{split.replace('/', '-')}-prompts"
    ctx.log_dataset(ref, name=name, context="prompts" if split == "train" else split)
    return ref
