"""A finished campaign's claim again, each problem counted once, and its OOD claim outside the development slice.

An analysis of slices already reported, not a choice. The built-in task's held-out sets ask one problem in several
wordings (the default's 200 test questions are 73 problems, its 200 validation questions 79), and a policy mostly
gives every wording the same verdict, so intervals and paired tests over the items claim more than the problems
show. Since this script's commit the campaign itself counts problems (`tasks.stats`: `clustered_interval`,
`clustered_mcnemar`); this re-reads campaigns scored before it from their folders, with the same functions
(`tasks.report.final_claim` on rows stamped by `tasks.prompts.item_problem`):

- against the starting policy and against the few-shot bar (the base behind its worked examples), on test and OOD;
- with `--outside-development`, the OOD claim again on the problems outside the OOD development slice
  (`benchmarks/working_probe.py`'s `ood_development`, on which the default's working was chosen): that slice
  leaves out the OOD problems of the seeds it was drawn against (`REPORTED_SEEDS`, 0-2), so a later seed's OOD
  slice may share problems with it, and only the problems outside it were never used to choose.

    .venv/bin/python benchmarks/claim_by_problem.py runs/kinds-s0-* runs/seeds-s3-* --outside-development [--pool]

Prints each campaign's claims; appends nothing (the folders are the record).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configs.loader import load_config  # noqa: E402
from configs.schema import CampaignConfig  # noqa: E402
from tasks.prompts import item_problem  # noqa: E402
from tasks.records import read_records  # noqa: E402
from tasks.report import final_claim  # noqa: E402

Rows = list[dict[str, Any]]


def final_round(campaign: Path) -> Path:
    """The campaign's final policy's round folder: the last round scored on test."""
    scored = sorted(p.parent for p in campaign.glob("round-*/test-evaluated.jsonl") if p.parent.name != "round-00")
    if not scored:
        raise SystemExit(f"{campaign}: no round after round 0 was scored on test (not a finished campaign?)")
    return scored[-1]


def stamped(path: Path, problem_of: Any) -> Rows:
    """A scored file's rows with each row's problem (`tasks.prompts.item_problem`)."""
    return [{**row, "problem": problem_of(row)} for row in read_records(path)]


def development_problems() -> set[str]:
    """The problems of the OOD development slice the default's working was chosen on (150, as in its sections)."""
    from benchmarks.working_probe import ood_development

    default = load_config("default")
    problem_of = item_problem(default)
    return {problem_of(row) for row in ood_development(default, 150)}


def claims(campaign: Path, developed: set[str] | None, pooled: dict[str, Rows] | None = None) -> list[str]:
    """The campaign's claim lines, each problem counted once; with `developed` (`development_problems`), its OOD
    claims again on the problems outside them. With `pooled`, the few-shot bar's and the final policy's OOD rows
    (all of them, and those outside the development slice) are added to it, ids and problems named by campaign,
    so the campaigns' problems stay apart as groups."""
    config = CampaignConfig.model_validate_json((campaign / "config.json").read_text())
    problem_of = item_problem(config)
    start, final = campaign / "round-00", final_round(campaign)
    lines = [f"{campaign.name} (seed {config.seed}, final policy {final.name}):"]
    for label, prefix in (("starting policy", ""), ("few-shot bar", "few-shot-")):
        if not (start / f"test-{prefix}evaluated.jsonl").exists():
            continue
        start_rows = {
            split: stamped(start / f"{split}-{prefix}evaluated.jsonl", problem_of) for split in ("test", "ood")
        }
        final_rows = {split: stamped(final / f"{split}-evaluated.jsonl", problem_of) for split in ("test", "ood")}
        claim = final_claim(
            start_rows["test"], final_rows["test"], start_ood=start_rows["ood"], final_ood=final_rows["ood"]
        )
        lines.append(f"  against the {label}: {claim.sentence()}")
        if developed is not None:
            kept = {row["id"] for row in start_rows["ood"] if row["problem"] not in developed}
            outside = final_claim(
                [row for row in start_rows["ood"] if row["id"] in kept],
                [row for row in final_rows["ood"] if row["id"] in kept],
            )
            if pooled is not None and label == "few-shot bar":  # the bar against the final policy
                for key, rows in (("bar", start_rows["ood"]), ("final", final_rows["ood"])):
                    tagged = [
                        {**r, "id": f"{campaign.name}/{r['id']}", "problem": f"{campaign.name}/{r['problem']}"}
                        for r in rows
                    ]
                    pooled.setdefault(f"all/{key}", []).extend(tagged)
                    pooled.setdefault(f"outside/{key}", []).extend(
                        r for r, raw in zip(tagged, rows, strict=True) if raw["id"] in kept
                    )
            shared = len(start_rows["ood"]) - len(kept)
            lines.append(
                f"    OOD outside the development slice ({shared} of {len(start_rows['ood'])} items share a problem "
                f"with it): {outside.sentence().replace('test, start -> final', 'OOD, start -> final')}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="+", type=Path, help="finished campaign folders (runs/NAME-...)")
    parser.add_argument(
        "--outside-development",
        action="store_true",
        help="also the OOD claim on problems outside the development slice",
    )
    parser.add_argument(
        "--pool",
        action="store_true",
        help="with --outside-development: also the OOD claim against the few-shot bar pooled over the campaigns "
        "(all items, and those outside the development slice), each campaign's problems its own groups",
    )
    args = parser.parse_args()
    developed = development_problems() if args.outside_development else None  # drawn once for every campaign
    pooled: dict[str, Rows] | None = {} if args.pool and developed is not None else None
    for campaign in args.campaigns:
        print("\n".join(claims(campaign, developed, pooled)))
    if pooled:
        for part, label in (("all", "all OOD items"), ("outside", "OOD items outside the development slice")):
            claim = final_claim(pooled[f"{part}/bar"], pooled[f"{part}/final"])
            sentence = claim.sentence().replace("test, start -> final", "few-shot bar -> final")
            print(f"pooled over {len(args.campaigns)} campaigns, {label}: {sentence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
