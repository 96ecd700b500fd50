"""What `preflight` costs on shipped configs, this checkout against another commit's, alternated in one run.

Each measurement is a fresh Python process that loads a config and times `flows.preflight.preflight` on it (what
`selftrain run` and `selftrain validate` pay once per campaign before anything is written). The other commit is
checked out into a temporary git worktree and put first on `PYTHONPATH`; the two alternate, so the machine's
noise falls on both. The result is the ratio of medians within this one run.

Run: `.venv/bin/python benchmarks/preflight_cost.py --base de91f17 [--repeats 5] [--configs default word-problems tiny]
[--file-rows 100000]`. `--file-rows N` adds a file campaign (`file-N`: the tiny config on a written training file of
N answered rows, its validation carved from it, and a 200-row test file).
Appends one JSON line to `benchmarks/results/preflight_cost.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import append_line

REPO = Path(__file__).resolve().parents[1]
TIMED = (
    "import sys, time\n"
    "from configs.loader import load_config\n"
    "from flows.preflight import preflight\n"
    "config = load_config(sys.argv[1], sys.argv[2:])\n"
    "started = time.perf_counter()\n"
    "preflight(config)\n"
    "print(time.perf_counter() - started)\n"
)


def seconds(checkout: Path, config: list[str]) -> float:
    """One process's `preflight` time on `config` (a config's name, then overrides), with `checkout`'s code."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", TIMED, *config], cwd=checkout, env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def file_campaign(folder: Path, rows: int) -> list[str]:
    """The tiny config on a training file of `rows` answered word problems and a 200-row test file in `folder`."""
    files = {"train": rows, "test": 200}
    for split, count in files.items():
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in range(count):
                row = {"id": f"{split}-{i}", "prompt": f"A {split} shop sells {i} pens, then {i + 7}. How many?"}
                handle.write(json.dumps({**row, "answer": str(2 * i + 7)}) + "\n")
    return [
        "tiny",
        "prompts.source=file",
        f"prompts.train_path={folder / 'train.jsonl'}",
        f"prompts.test_path={folder / 'test.jsonl'}",
        f"tracking.output_dir={folder / 'runs'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (a git ref)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=["default", "word-problems", "tiny"])
    parser.add_argument("--file-rows", type=int, default=0, help="add a file campaign of this many training rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="selftrain-base-") as tmp:
        cases = {config: [config] for config in args.configs}
        if args.file_rows:
            cases[f"file-{args.file_rows}"] = file_campaign(Path(tmp), args.file_rows)
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=REPO, check=True)
        try:
            times: dict[str, dict[str, list[float]]] = {"base": {}, "this": {}}
            for case, config in cases.items():
                for _ in range(args.repeats):
                    for name, checkout in (("base", base), ("this", REPO)):
                        times[name].setdefault(case, []).append(seconds(checkout, config))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=True)
    result = {"base": args.base, "repeats": args.repeats}
    for case in cases:
        old, new = statistics.median(times["base"][case]), statistics.median(times["this"][case])
        result[case] = {"base_s": round(old, 3), "this_s": round(new, 3), "ratio": round(new / old, 2)}
    append_line(REPO / "benchmarks" / "results" / "preflight_cost.jsonl", result)


if __name__ == "__main__":
    main()
