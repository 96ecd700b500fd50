"""`selftrain judge-eval CONFIG`: which judge catches bad responses, and at what cost, on a labelled set.

The labelled set is a user file (JSONL with `prompt`, `response`, `correct`) or, by default, samples of the
campaign's base policy on training prompts labelled by the verifier, split by prompt into a reference bank,
a calibration split (Meta Ranking's reference weights), a validation split (thresholds) and a test split.
Every LLM judge (pointwise, Meta Ranking, Meta Ranking with both orders, the label-transfer baseline) runs
on the configured judge model; on request (`--judges ...,reward-model`) a reward model too:
`judge.reward_model`, or one trained with TRL's RewardTrainer on preference pairs of the bank split, from
the judge model. Rows for the verifier (oracle) and keeping all bracket them. The report
(`tasks.judging.report`: AUROC with bootstrap intervals, paired differences to pointwise, cost per item) is
a terminal table, `results.json` and `results.md`, an MLflow run (`judge_eval/<judge>/<metric>`) and a PNG
of ROC curves. The evaluation is a Prefect flow (`selftrain-judge-eval`, flows/judge_eval_flow.py, imported only to
run it: this module is imported for every `selftrain` command line, `--help` included), its config checked first
as `selftrain run` checks one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows.launch import launch, load_checked, quiet_defaults, quiet_progress_bars

if TYPE_CHECKING:
    from configs.schema import CampaignConfig
    from tasks.records import Record

JUDGES = ("pointwise", "meta-ranking", "meta-ranking-swap", "label-transfer")
OPTIONAL_JUDGES = ("reward-model",)  # accepted by --judges, not run by default (training one takes a while)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `selftrain judge-eval`."""
    parser.add_argument("args", nargs="*", help="config file or shipped name, then dotted key=value overrides")
    parser.add_argument("--labelled", help="JSONL with prompt, response, correct (default: sample and verify)")
    choices = ", ".join(JUDGES + OPTIONAL_JUDGES)
    parser.add_argument("--judges", default=",".join(JUDGES), help=f"comma-separated, of {choices}")
    parser.add_argument("--out", help="folder for the labelled set, results and the ROC PNG")


def main(ns: argparse.Namespace) -> int:
    """Run `selftrain judge-eval`: check the judges, the output folder, the config and the labelled set (2 and one
    line on stderr if wrong), then run the judge-eval flow."""
    judges = [j.strip() for j in ns.judges.split(",") if j.strip()]
    choices = ", ".join(JUDGES + OPTIONAL_JUDGES)
    unknown = [j for j in judges if j not in JUDGES + OPTIONAL_JUDGES]
    if unknown or not judges:
        reason = f"unknown judge {unknown[0]!r}" if unknown else f"{ns.judges!r} names no judge"
        print(f"selftrain: error: --judges: {reason} (choose from {choices})", file=sys.stderr)
        return 2
    if ns.out:
        from flows.preflight import PreflightError, check_folder

        try:
            check_folder(f"--out {ns.out}", Path(ns.out))  # a file there is one line, not the flow's traceback
        except PreflightError as err:
            print(f"selftrain: error: {err}", file=sys.stderr)
            return 2
    config = load_checked(ns.args, default="judge-eval")
    if config is None:
        return 2
    quiet_defaults()  # before check_labelled imports Prefect (the flow's split shares), which reads them once
    if ns.labelled:
        from tasks.judging.reference_bank import BankError, load_bank_file

        try:
            # Here, so a bad line or a set the judges cannot be measured on is one line on stderr, not a flow's
            # traceback (or a table of NaNs).
            check_labelled(config, load_bank_file(ns.labelled), judges, ns.labelled)
        except BankError as err:
            print(f"selftrain: error: --labelled: {err}", file=sys.stderr)
            return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ns.out or str(Path(config.tracking.output_dir) / f"{config.name}-judge-eval-{stamp}")
    quiet_progress_bars()

    def start() -> object:
        from flows.judge_eval_flow import judge_eval_flow

        return judge_eval_flow(config, judges, out, ns.labelled)

    launch(start, preload=["flows.judge_eval_flow"])
    return 0


def check_labelled(config: CampaignConfig, rows: Sequence[Record], judges: Sequence[str], source: str) -> None:
    """Refuse a labelled set the judges cannot be measured on, split by prompt as the flow splits it: both labels
    in the set, a validation split holding both (every threshold is calibrated there) and a test split holding
    both (AUROC needs them), and a bank split Meta Ranking and label transfer can draw references from.

    Raises:
        BankError: one line naming `source`, the split and what it lacks.
    """
    from flows.judge_eval_flow import SHARES
    from tasks.judging.reference_bank import BankError, check_bank, check_both_labels
    from tasks.judging.report import split_by_prompt
    from tasks.prompts import item_problem

    if not rows:
        raise BankError(f"{source}: holds no rows; judging is measured on correct and wrong responses")
    check_both_labels(rows, source, "judging is measured on correct and wrong responses")
    problem_of = item_problem(config)
    bank, _, dev, test = split_by_prompt(rows, SHARES, config.seed, problem_of)
    problems = len({problem_of(row) for row in rows})
    bank_share, calibration_share, dev_share = (f"{share * 100:g}%" for share in SHARES)
    shares = f"{bank_share} bank, {calibration_share} calibration, {dev_share} validation, the rest test"
    for name, split, purpose in (("validation", dev, "thresholds are calibrated"), ("test", test, "AUROC is measured")):
        held = {bool(row["correct"]) for row in split}
        if len(held) < 2:
            lacks = "no rows" if not held else f"only {'correct' if held == {True} else 'wrong'} rows ({len(split)})"
            raise BankError(
                f"{source}: its {name} split holds {lacks}, and {purpose} on both labels there "
                f"({len(rows)} rows over {problems} problems, split by problem: {shares}); "
                "add rows, with more problems of both labels"
            )
    if any(name.startswith(("meta-ranking", "label-transfer")) for name in judges):
        check_bank(bank, config.judge.references, f"{source}: the bank split")
