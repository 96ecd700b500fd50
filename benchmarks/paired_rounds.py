"""Pair two campaigns' rounds on the same validation and test items (exact McNemar, paired bootstrap).

A campaign's summary pairs its final policy with its own start. Two recipes run with the same `seed` and prompt
settings draw the same validation and test problems, so their policies can be compared item by item:

    .venv/bin/python benchmarks/paired_rounds.py RUNS/CAMPAIGN_A round-04 RUNS/CAMPAIGN_B round-02

A is the candidate, B the reference. Validation pairs each round's `evaluated.jsonl`; test pairs
`test-evaluated.jsonl` where both rounds have one. Reads files only (no model). Prints one JSON line and appends
it to `benchmarks/results/paired_rounds.jsonl`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import append_line  # noqa: E402
from tasks.records import read_records  # noqa: E402
from tasks.stats import mcnemar_exact, paired_bootstrap, paired_counts, paired_credit  # noqa: E402
from tasks.tracking import git_commit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paired_rounds.jsonl"
SPLITS = {"validation": "evaluated.jsonl", "test": "test-evaluated.jsonl"}


def pair_split(candidate: Path, reference: Path, split: str) -> dict[str, Any] | None:
    """Compare two rounds' answers on one split; None when either round did not score it."""
    name = SPLITS[split]
    if not (candidate / name).exists() or not (reference / name).exists():
        return None
    _, cand, ref = paired_credit(
        read_records(candidate / name), read_records(reference / name), names=("candidate", "reference", split)
    )
    counts = paired_counts(cand, ref)
    diff, low, high = paired_bootstrap([float(x >= 0.5) for x in cand], [float(x >= 0.5) for x in ref])
    return {
        "items": counts.items,
        "candidate_accuracy": counts.candidate_right / counts.items,
        "reference_accuracy": counts.reference_right / counts.items,
        "only_reference_right": counts.b,
        "only_candidate_right": counts.c,
        "mcnemar_p": mcnemar_exact(counts.b, counts.c),
        "difference_ci": [low, high],
        "difference": diff,
    }


def main() -> int:
    """Pair, append."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", type=Path, help="the candidate campaign's folder")
    parser.add_argument("candidate_round", help="e.g. round-04")
    parser.add_argument("reference", type=Path, help="the reference campaign's folder")
    parser.add_argument("reference_round", help="e.g. round-02")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file appended to")
    ns = parser.parse_args()
    cand, ref = ns.candidate / ns.candidate_round, ns.reference / ns.reference_round
    result: dict[str, Any] = {
        "commit": git_commit(),
        "candidate": f"{ns.candidate.name}/{ns.candidate_round}",
        "reference": f"{ns.reference.name}/{ns.reference_round}",
    }
    for split in SPLITS:
        paired = pair_split(cand, ref, split)
        if paired is not None:
            result[split] = paired
    append_line(ns.results, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
