"""`selftrain score [CONFIG] [key=value ...] FILE`: score generations from anywhere with the campaign's verifier.

A user brings a JSONL, CSV or Parquet file of `prompt`, `response` and `answer` rows (another system's
output, another model's) and gets the same yardstick as the campaign: strict accuracy with its Wilson 95%
interval, the lenient accuracy and the format rate. The rows, each with its credit, are written beside the
file as `<file>.scored.jsonl`. Nothing is recorded in MLflow or Prefect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from configs.loader import ConfigError, is_override, load_config, split_args

if TYPE_CHECKING:
    from configs.schema import CampaignConfig

DEFAULT_CONFIG = "default"
USAGE = "selftrain score [CONFIG] [key=value ...] FILE"


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare `selftrain score [CONFIG] [key=value ...] FILE`."""
    parser.usage = "%(prog)s [-h] [CONFIG] [key=value ...] FILE"  # argparse would repeat a "+" metavar
    parser.add_argument(
        "args",
        nargs="+",
        metavar="[CONFIG] [key=value ...] FILE",
        help="config file or shipped name (its judge.answer_pattern is the yardstick), overrides, then the file",
    )


def scored_path(path: str | Path) -> Path:
    """Where the scored rows of `path` go: `<path>.scored.jsonl`, beside it."""
    path = Path(path)
    return path.with_name(path.name + ".scored.jsonl")


def score_file(path: str | Path, config: CampaignConfig) -> tuple[Path, dict[str, float]]:
    """Score a response file with `config`'s `judge.answer_pattern` and write its rows with their credit beside it.
    The interval counts each problem once, as the campaign's do (`tasks.prompts.item_problem`: a built-in question
    by its canonical problem, else a row's `problem` column, else its prompt's text).

    Returns:
        (the scored file, metrics from `tasks.evaluate.score_responses`).

    Raises:
        PromptFileError: a file that cannot be read, naming the file, line and reason.
        ValueError: the scored file's path is a directory.
        PreflightError: answers `answer_pattern` cannot read ("ten", "5.0" under the default, which reads an
            integer), by id: every response would be scored wrong against them.
    """
    from flows.preflight import check_answers_read
    from tasks.evaluate import score_responses
    from tasks.prompt_files import load_response_file
    from tasks.prompts import item_problem
    from tasks.records import write_records

    answer_pattern = config.judge.answer_pattern

    out = scored_path(path)
    if out.is_dir():  # checked before scoring: the write would fail at the end with the temporary file's name
        raise ValueError(f"{out}: a directory, where the scored rows would be written; move it away")
    rows = load_response_file(path)
    check_answers_read(str(path), rows, answer_pattern, "reference answers", "every response would be scored wrong")
    rows, metrics = score_responses(rows, answer_pattern, item_problem(config))
    write_records(out, rows)
    return out, metrics


def format_report(metrics: dict[str, float], out: Path) -> str:
    """The lines `selftrain score` prints."""
    items, problems = int(metrics["items"]), int(metrics["problems"])
    right = round(metrics["accuracy"] * items)
    counted = f", counting each of the {problems} problems once" if problems < items else ""
    return "\n".join(
        [
            f"accuracy          {metrics['accuracy']:.3f}  ({right}/{items}, 95% CI "
            f"{metrics['ci_low']:.3f}-{metrics['ci_high']:.3f}{counted})",
            f"lenient accuracy  {metrics['lenient_accuracy']:.3f}  (last 'answer is N', else the last number)",
            f"format rate       {metrics['format_rate']:.3f}  (responses stating an answer in the expected form)",
            f"scored rows: {out}",
        ]
    )


def main(ns: argparse.Namespace) -> int:
    """Run `selftrain score`; 2 with a one-line error for a bad config or file."""
    *config_args, file = ns.args
    if is_override(file) and not Path(file).exists():
        # Else FILE, before it, was read as the config ("not valid YAML") or as an override.
        print(
            f"selftrain: error: FILE comes last: {USAGE} (the last argument, {file}, is an override)", file=sys.stderr
        )
        return 2
    path, overrides = split_args(config_args)
    try:
        config = load_config(path or DEFAULT_CONFIG, overrides)
        out, metrics = score_file(file, config)
    except (ConfigError, ValueError, OSError) as err:
        print(f"selftrain: error: {err}", file=sys.stderr)
        return 2
    print(format_report(metrics, out))
    return 0
