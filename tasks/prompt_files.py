"""Reading prompt files: JSONL, CSV or Parquet rows as prompt records, or an error naming file, line and reason.

Every format yields the same shape, `{"id", "prompt", "answer"}` (answer may be None; a row's worked
`solution` is kept when it has one, for few-shot examples, its `kind`, for the claim per kind, and its `problem`,
for statistics that count each problem once), so the rest
of the loop never asks which format a file had. A bad file fails here, once, with a message that names
the file, the line or row and the reason, instead of as a KeyError three tasks later.
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
import logging
import math
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from tasks.records import Record
from tasks.text_files import TextFileError, lone_surrogate, numbered_lines, read_text

JSONL_SUFFIXES = (".jsonl", ".json")
SUFFIXES = (*JSONL_SUFFIXES, ".csv", ".parquet")


class PromptFileError(ValueError):
    """A prompt file that cannot be used, with the file, the place in it and the reason.

    The message reads `path, line 7: reason` (the 1-based line of a JSONL or CSV file where the row starts;
    a Parquet file's 1-based data row reads `path, row 7: reason`) or `path: reason` when the problem is the
    whole file.

    Attributes:
        path: The file as the caller named it.
        reason: What is wrong, in a few words.
        line: The 1-based line (JSONL, CSV) or data row (Parquet), or None for a whole-file problem.
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
    """Read prompt records from a JSON (`.jsonl`/`.json`: one object per line, or one array of objects), CSV or
    Parquet file.

    Each row needs a non-empty string `prompt`. `answer` is optional: text (trimmed of surrounding whitespace) or a
    finite number becomes a string (integral floats lose their `.0`), while null, NaN and empty become None; a
    boolean or an infinity is an error. The id is the row's `id` when it has one, else
    `<file stem>-<0-based row index>`.

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
    shared = _SHARED.get()
    key = None if shared is None else _read_key(path, require_answer)
    if shared is None or key is None:
        rows, unit = _file_rows(path)
        return _records(path, rows, unit, require_answer=require_answer)
    if key not in shared:
        rows, unit = _file_rows(path)
        shared[key] = _records(path, rows, unit, require_answer=require_answer)
    return [dict(record) for record in shared[key]]


# The records `load_prompt_file` read inside `shared_reads`, by file as it was on disk; None outside.
_SHARED: contextvars.ContextVar[dict[tuple[str, int, int, bool], list[Record]] | None] = contextvars.ContextVar(
    "prompt_file_reads", default=None
)


@contextmanager
def shared_reads() -> Iterator[None]:
    """Within the block, `load_prompt_file` reads each file once: a later call for the same file, unchanged on disk
    (same size and modification time), gets copies of the records the first call read.

    Preflight's checks ask for a file campaign's training file up to five times (the file checks, the whole
    training split, the validation carved from it, round 1's draw); a file that changes between two calls is
    read again. Scoped to the calling thread or task (a context variable), so a campaign running beside it
    reads its files as before.
    """
    outer = _SHARED.get()
    token = _SHARED.set({} if outer is None else outer)  # a block inside another shares the outer's reads
    try:
        yield
    finally:
        _SHARED.reset(token)


def _read_key(path: Path, require_answer: bool) -> tuple[str, int, int, bool] | None:
    """A file as `shared_reads` keeps it: resolved path, size and modification time; None when it cannot be
    looked at (the read then raises as it would outside the block)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, require_answer)


def _file_rows(path: Path) -> tuple[list[tuple[int, Any]], str]:
    """`_read_rows` of a file checked first to be there, of a supported type and not empty; no rows is an error."""
    suffix = path.suffix.lower()
    if path.is_dir():  # before its suffix: a folder has none, and "unsupported file type" would hide what it is
        raise PromptFileError(path, f"a directory, not a file (name a {', '.join(SUFFIXES)} file in it)")
    if suffix not in SUFFIXES:
        raise PromptFileError(path, f"unsupported file type {suffix or '(none)'!r} (use {', '.join(SUFFIXES)})")
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths resolve against the working directory, {Path.cwd()})"
        raise PromptFileError(path, f"file not found{where}")
    if not path.is_file():
        raise PromptFileError(path, "not a file")
    if path.stat().st_size == 0:
        raise PromptFileError(path, "empty file")

    rows, unit = _read_rows(path)
    if not rows:
        raise PromptFileError(path, "no rows")
    return rows, unit


def _records(path: Path, rows: list[tuple[int, Any]], unit: str, *, require_answer: bool) -> list[Record]:
    """`load_prompt_file`'s records of a file's `rows` (`_file_rows`), each row checked."""
    if require_answer and not any(isinstance(raw, dict) and "answer" in raw for _, raw in rows):
        columns = sorted({key for _, raw in rows if isinstance(raw, dict) for key in raw})
        raise PromptFileError(
            path, f"no 'answer' column (this file is scored against answers; columns: {', '.join(columns)})"
        )

    records: list[Record] = []
    first_seen: dict[str, tuple[int, bool]] = {}  # id -> (place, whether the id was given by default)
    for index, (number, raw) in enumerate(rows):
        try:
            _check_text(raw)
            record = _to_record(raw, default_id=f"{path.stem}-{index}", require_answer=require_answer)
        except _RowError as error:
            raise PromptFileError(path, str(error), number, unit) from None
        # Later steps group samples by id, so two prompts sharing one would silently merge.
        by_default = _scalar_text(raw.get("id"), "id") is None
        if record["id"] in first_seen:
            first, first_by_default = first_seen[record["id"]]
            # A default id the user never wrote would otherwise read as a typo on a line that has no id.
            reason = f"duplicate id {record['id']!r} (first at {unit} {first}"
            if by_default:
                reason += "; this row has no 'id', so it got the default <file stem>-<row index>)"
            elif first_by_default:
                reason += ", which has no 'id', so it got the default <file stem>-<row index>)"
            else:
                reason += ")"
            raise PromptFileError(path, reason, number, unit)
        first_seen[record["id"]] = (number, by_default)
        records.append(record)
    return records


def row_places(path: str | Path) -> dict[str, tuple[int, str]]:
    """Where each row of a prompt or response file is, by id: (1-based line where it starts, "line") for JSONL and
    CSV, (1-based data row, "row") for Parquet, as a `PromptFileError` names a bad row. For a message about a row
    found after reading (a prompt too long, an answer the pattern cannot read); the file is read again, so call
    it when refusing. A file that can no longer be read gives {}; a row whose id cannot be read is left out.
    """
    path = Path(path)
    try:
        rows, unit = _file_rows(path)
    except (PromptFileError, OSError):
        return {}
    places: dict[str, tuple[int, str]] = {}
    for index, (number, raw) in enumerate(rows):
        try:
            given = _scalar_text(raw.get("id"), "id") if isinstance(raw, dict) else None
        except _RowError:
            continue
        places.setdefault(given if given is not None else f"{path.stem}-{index}", (number, unit))
    return places


def place_of(places: dict[str, tuple[int, str]], row_id: Any) -> str:
    """A row's place for a message, "line 7, id 'q7'" (`row_places`), or "id 'q7'" when it is not known."""
    found = places.get(str(row_id))
    return f"id {row_id!r}" if found is None else f"{found[1]} {found[0]}, id {row_id!r}"


def _check_text(raw: Any) -> None:
    """Raise `_RowError` for a text cell holding a lone surrogate (`tasks.text_files.lone_surrogate`)."""
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        where = lone_surrogate(value) if isinstance(value, str) else None
        if where:
            raise _RowError(f"{key!r} holds a lone surrogate ({where}), not text")


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
    rows, unit = _file_rows(path)
    records = _records(path, rows, unit, require_answer=True)  # checks the prompt, answer and ids
    out = []
    for record, (number, raw) in zip(records, rows, strict=True):
        response = raw.get("response")
        if not isinstance(response, str):
            found = "no 'response'" if response is None else f"'response' must be a string, got {_json_type(response)}"
            raise PromptFileError(path, found, number, unit)
        extra = {k: v for k, v in raw.items() if k not in ("id", "prompt", "answer", "response")}
        out.append({**extra, **record, "response": response})
    return out


def _read_rows(path: Path) -> tuple[list[tuple[int, Any]], str]:
    """(place, parsed row) for each row of a JSONL, CSV or Parquet file, and the word for the place: "line" (of
    the file, where the row starts) for JSONL and CSV, "row" (1-based data row) for Parquet and for a CSV file
    whose rows `csv` and pandas count differently."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path), "line"
    if suffix == ".csv":
        return _read_csv(path)
    return _read_parquet(path), "row"


def _read_text(path: Path) -> str:
    """`tasks.text_files.read_text`, its error a `PromptFileError` naming the file and the line."""
    try:
        return read_text(path)
    except TextFileError as error:
        raise PromptFileError(path, error.reason, error.line) from None


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line, or for each element of a file that is one
    JSON array of rows (`_read_json_array`), as `datasets`' JSON builder reads both.

    Parsed with `json` rather than `datasets`: this names the bad line, and Arrow's column typing would
    turn an integer answer into a float (12 -> 12.0) when another row's answer is a float.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        array = _read_json_array(path, text)
        if array is not None:
            return array
    rows: list[tuple[int, Any]] = []
    for number, line in numbered_lines(text):
        try:
            value = json.loads(line, object_pairs_hook=_json_object)
        except json.JSONDecodeError as error:
            if not rows:
                _check_whole_json(path, text)
            raise PromptFileError(path, f"not valid JSON ({error.msg})", number) from None
        except _RowError as error:
            raise PromptFileError(path, str(error), number) from None
        rows.append((number, value))
    return rows


def _read_json_array(path: Path, text: str) -> list[tuple[int, Any]] | None:
    """(1-based line where the element starts, parsed element) for each element of a file that is one JSON array,
    or None when the array opens and closes on one line with more after it: JSON Lines whose first row is an array,
    which the line reader names at its line.

    Raises:
        PromptFileError: at the line of the first element that is not valid JSON, or of a key given twice, or for
            an array that is not closed.
    """
    decoder = json.JSONDecoder(object_pairs_hook=_json_object)
    opened = text.index("[")
    position = opened + 1
    rows: list[tuple[int, Any]] = []

    counted = [0, 1]  # offset counted up to, and the line there: offsets only grow, so each byte is counted once

    def line_at(offset: int) -> int:
        if offset >= counted[0]:
            counted[:] = [offset, counted[1] + text.count("\n", counted[0], offset)]
            return counted[1]
        return text.count("\n", 0, offset) + 1

    def skip_space(offset: int) -> int:
        while offset < len(text) and text[offset] in " \t\r\n":
            offset += 1
        return offset

    position = skip_space(position)
    if text.startswith("]", position):
        return [] if not text[position + 1 :].strip() else None
    while True:
        start = position
        try:
            value, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError as error:
            raise PromptFileError(path, f"not valid JSON in the array ({error.msg})", line_at(error.pos)) from None
        except _RowError as error:
            raise PromptFileError(path, str(error), line_at(start)) from None
        rows.append((line_at(start), value))
        position = skip_space(position)
        if text.startswith(",", position):
            comma, position = position, skip_space(position + 1)
            if text.startswith("]", position):
                raise PromptFileError(path, "a ',' before the array's closing ']' (JSON allows none)", line_at(comma))
            continue
        if text.startswith("]", position):
            rest = text[position + 1 :]
            if not rest.strip():
                return rows
            if line_at(position) == line_at(opened):  # JSON Lines whose first row is an array, named at its line
                return None
            after = position + 1 + len(rest) - len(rest.lstrip())
            raise PromptFileError(
                path, "text after the JSON array's closing ']' (two arrays, or a stray ']'?)", line_at(after)
            )
        where = line_at(position)
        if position >= len(text):
            raise PromptFileError(path, "the JSON array is not closed (no ']' at the end)", where)
        raise PromptFileError(path, "not valid JSON in the array (expected ',' or ']' after a row)", where)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (`json` would silently keep the last value)."""
    seen = set()
    for key, _value in pairs:
        if key in seen:
            raise _RowError(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def _check_whole_json(path: Path, text: str) -> None:
    """Raise `PromptFileError` for a file of JSON objects over several lines rather than JSON Lines (one object, or
    several back to back as `jq .` writes them): read line by line, its first line gives a misleading reason
    (broken JSON)."""
    decoder, position, objects = json.JSONDecoder(), 0, 0
    try:
        while position < len(text.rstrip()):
            value, position = decoder.raw_decode(text, len(text) - len(text[position:].lstrip()))
            if not isinstance(value, dict):
                return
            objects += 1
    except (json.JSONDecodeError, RecursionError):
        return
    wanted = "not JSON Lines (one object per line) or one JSON array of objects"
    if objects == 1:
        raise PromptFileError(path, f"one JSON object over several lines, {wanted}")
    raise PromptFileError(
        path,
        f"{objects} JSON objects over several lines each (as `jq .` writes them), {wanted}: `jq -c` writes one a line",
    )


def _read_csv(path: Path) -> tuple[list[tuple[int, Any]], str]:
    """(1-based line of the file where the row starts, row dict) for each CSV row, and "line"; every cell is read
    as text.

    The rows are `datasets`' (pandas'), which skips blank and whitespace-only lines and lets a quoted cell run
    over several lines; `csv` finds where each kept row starts, so an error names the line an editor shows. Where
    the two count the rows differently, the places are data rows, and the word "row".
    """
    header, records = _csv_records(path, _read_text(path))
    names = [cell.strip() for cell in header]  # "prompt, answer": a space after the comma is not part of the name
    if "" in names and header:
        column = names.index("") + 1
        raise PromptFileError(
            path,
            f"column {column} of the header has no name (an index pandas wrote without index=False, or a trailing "
            "comma?): name it or drop it",
            1,
        )
    _check_columns(path, names)
    # pandas refuses a longer row naming a line it counts its own way, and pads a shorter one, shifting its cells.
    for start, cells in records:
        if len(cells) != len(header):
            raise PromptFileError(path, f"{len(cells)} fields where the header has {len(header)}", start)
    starts = [start for start, _cells in records]
    # `datasets` reports a header-only file as 'Instruction "train" corresponds to no data!'.
    if not starts:
        return [], "line"
    # All-string features keep cells as written ("012" stays "012"); keep_default_na=False keeps "NA" or
    # "null" answers as text, so only an empty cell means "no answer".
    features = datasets.Features({name: datasets.Value("string") for name in header})
    rows = _load_with_datasets(path, "csv", features=features, keep_default_na=False)
    if names != header:
        rows = [{name: row[raw] for raw, name in zip(header, names, strict=True)} for row in rows]
    for row in rows:  # "12.0", as pandas writes a float column (one with a gap), is the 12 a JSON 12.0 reads as
        answer = row.get("answer")
        if isinstance(answer, str) and _INTEGRAL_DECIMAL.fullmatch(answer.strip()):
            row["answer"] = answer.strip().split(".")[0]
    if len(starts) != len(rows):
        return list(enumerate(rows, start=1)), "row"
    return list(zip(starts, rows, strict=True)), "line"


_INTEGRAL_DECIMAL = re.compile(r"-?[0-9]+\.0+")


def _csv_records(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's cells, and (1-based file line where it starts, cells) for each record after it that pandas
    keeps (it skips a blank or whitespace-only one-line record).

    Raises:
        PromptFileError: a quoted field never closed, at the line where it opens; a record `csv` cannot read.
    """
    # A probe line after the text tells whether the file ends inside a quoted field: then `csv` (not strict) puts
    # the probe in that field's cell instead of reading it as a record of its own.
    probe = text + ("" if text.endswith(("\n", "\r")) else "\n") + "x"
    lines = io.StringIO(probe, newline="").readlines()  # the physical lines `csv` counts in `line_num`
    _check_separator(path, lines[0])
    _check_quotes(path, probe, len(lines))
    reader = csv.reader(io.StringIO(probe, newline=""))
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if reader.line_num > start or lines[start - 1].strip() or not records:
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as error:
        raise PromptFileError(path, f"not valid CSV ({error})", start) from None
    last_start, last_cells = records.pop()
    if last_start != len(lines):
        # The open field's cell runs from its quote to the probe, so its line breaks count back to the quote.
        opened = len(lines) - (len(io.StringIO(last_cells[-1], newline="").readlines()) - 1)
        raise PromptFileError(path, "unclosed quote (the quoted field opened here runs to the end of the file)", opened)
    if not records:
        return [], []
    return records[0][1], records[1:]


def _check_separator(path: Path, header: str) -> None:
    """Refuse a header separated by another character than a comma (";" where a locale writes decimal commas, a
    tab): read as one column, its quotes and commas would otherwise fail far down the file.

    Raises:
        PromptFileError: at line 1, naming the separator.
    """
    if "," in header:
        return
    for separator, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if separator in header and "prompt" in (cell.strip().strip('"') for cell in header.split(separator)):
            raise PromptFileError(
                path, f"the header is separated by {name}, not commas: save the file as comma-separated CSV", 1
            )


def _check_quotes(path: Path, probe: str, lines: int) -> None:
    """Refuse a quote followed by text: `csv` (not strict) and pandas would read on, and a quote left open on one
    line would swallow the next rows into one cell up to the next quote.

    Raises:
        PromptFileError: at the line where the record starts (where such a quote was opened).
    """
    reader = csv.reader(io.StringIO(probe, newline=""), strict=True)
    start = 1
    try:
        for _cells in reader:
            start = reader.line_num + 1
    except csv.Error as error:
        # `_csv_records` names the rest: a quote still open at the end of the file, a cell over the field limit.
        if "expected after" not in str(error) or reader.line_num >= lines:
            return
        if reader.line_num == start:
            raise PromptFileError(path, f"not valid CSV ({error}: text after a closing quote)", start) from None
        reason = (
            f"not valid CSV: a quoted field opened here runs to line {reader.line_num}, where a quote is followed "
            "by text, not a comma (is a closing quote missing?)"
        )
        raise PromptFileError(path, reason, start) from None


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
    with tempfile.TemporaryDirectory(prefix="selftrain-prompts-") as cache_dir, _quiet_datasets():
        try:
            dataset = datasets.load_dataset(
                builder, data_files=str(path.resolve()), split="train", cache_dir=cache_dir, **options
            )
            return dataset.to_list()
        except Exception as error:  # datasets wraps pandas/pyarrow errors; the innermost one says what is wrong
            raise PromptFileError(path, f"not valid {builder.upper()} ({_root_message(error)})") from error


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide the "Generating train split" bar of a small local read, and `datasets`' ERROR log of a file it cannot
    read (the `PromptFileError` says it once, with its reason), restoring the caller's settings."""
    was_enabled = datasets.is_progress_bar_enabled()
    logger = logging.getLogger("datasets")
    level = logger.level
    datasets.disable_progress_bars()
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
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
    # A label written " 4" (a space after a CSV comma) or " 21 " means 4 and 21: kept trimmed, so the answer stored,
    # shown in a gold row (" The answer is 21.") and compared is the one meant. The strict answer form is asked of
    # the model's response, never of the user's label.
    answer = None if answer is None else answer.strip()
    if require_answer and answer is None:
        raise _RowError("no 'answer' (this file needs one on every row)")
    row_id = _scalar_text(raw.get("id"), "id")
    record = {"id": row_id if row_id is not None else default_id, "prompt": prompt, "answer": answer}
    # A worked `solution`, when the file has one, is what a few-shot example shows (tasks.prompts.few_shot_pairs).
    solution = _scalar_text(raw.get("solution"), "solution")
    # A `kind`, when the file has one, breaks the campaign's claim down by kind (tasks.prompts.item_kind).
    kind = _scalar_text(raw.get("kind"), "kind")
    # A `problem`, when the file has one, groups rows that ask one problem in other words: statistics count each
    # problem once (tasks.prompts.item_problem, tasks.stats.clustered_interval).
    problem = _scalar_text(raw.get("problem"), "problem")
    extras = {"solution": solution, "kind": kind, "problem": problem}
    return record | {field: value for field, value in extras.items() if value is not None}


def _scalar_text(value: Any, field: str) -> str | None:
    """A single value as text; None for null, NaN and empty text."""
    if value is None:
        return None
    if isinstance(value, dict | list | tuple):
        raise _RowError(f"{field!r} must be a single value, got {_json_type(value)}")
    # "True" or "inf" as text would match no model's answer, so the row could never be credited.
    if isinstance(value, bool):
        raise _RowError(f"{field!r} must be text or a number, got boolean")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise _RowError(f"{field!r} must be a finite number, got {json.dumps(value)}")
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
