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
from pathlib import Path

from flows.launch import launch, load_checked, quiet_defaults, quiet_progress_bars

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
    """Run `selftrain judge-eval`: check the judges and the config (2 and one line on stderr if wrong), then
    run the judge-eval flow."""
    judges = [j.strip() for j in ns.judges.split(",") if j.strip()]
    unknown = [j for j in judges if j not in JUDGES + OPTIONAL_JUDGES]
    if unknown:
        choices = ", ".join(JUDGES + OPTIONAL_JUDGES)
        print(f"selftrain: error: --judges: unknown judge {unknown[0]!r} (choose from {choices})", file=sys.stderr)
        return 2
    config = load_checked(ns.args, default="judge-eval")
    if config is None:
        return 2
    if ns.labelled:
        from tasks.judging.reference_bank import BankError, load_bank_file

        try:
            load_bank_file(ns.labelled)  # here, so a bad line is one line on stderr, not a flow's traceback
        except BankError as err:
            print(f"selftrain: error: --labelled: {err}", file=sys.stderr)
            return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ns.out or str(Path(config.tracking.output_dir) / f"{config.name}-judge-eval-{stamp}")
    quiet_defaults()
    quiet_progress_bars()

    def start() -> object:
        from flows.judge_eval_flow import judge_eval_flow

        return judge_eval_flow(config, judges, out, ns.labelled)

    launch(start, preload=["flows.judge_eval_flow"])
    return 0
