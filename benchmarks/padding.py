"""How much of a training batch is padding: the most that batching rows by length could save.

SFT pads each batch of `train.batch_size` rows to its longest row, and the model's body computes every position,
padded or not. This script tokenizes the default campaign's gold rows (prompt in the campaign's template, worked
solution, end of sequence) with the model's tokenizer, deals them into batches in random order as training does,
and reports real tokens over padded tokens, averaged over shuffles, for each campaign seed. One minus that
share bounds what `group_by_length` or padding-free batches could save of the body's work (the loss head
reads completion tokens only either way). No model is loaded and nothing is trained.

    .venv/bin/python benchmarks/padding.py [--shuffles 20] [overrides on configs/default.yaml]

Prints one JSON line and appends it to `benchmarks/results/padding.jsonl`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import append_line  # noqa: E402
from configs.loader import load_config  # noqa: E402
from flows.preflight import model_tokenizer_file  # noqa: E402
from tasks.prompts import gold_prompts  # noqa: E402
from tasks.select import gold_rows, to_sft_examples  # noqa: E402
from tasks.tracking import git_commit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "padding.jsonl"


def real_share(lengths: list[int], batch_size: int, *, seed: int) -> float:
    """Real tokens over padded tokens when `lengths` are dealt in a seeded random order into batches of
    `batch_size`, each padded to its longest row."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(lengths) / sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def main() -> int:
    """Tokenize, deal, append."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides on configs/default.yaml")
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="campaign seeds")
    ns = parser.parse_args()
    from tokenizers import Tokenizer

    tokenizer_file = model_tokenizer_file(load_config("default", ns.overrides))  # the seed does not change it
    if tokenizer_file is None:
        print("padding.py: the model's tokenizer.json is not on disk; run `bash infra/bootstrap.sh` first")
        return 1
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    by_seed = {}
    for seed in ns.seeds:
        config = load_config("default", [*ns.overrides, f"seed={seed}"])
        n = config.select.gold_examples
        # the gold rows as a round trains on them: select's gold rows as TRL's prompt and completion
        rows = gold_rows(gold_prompts(config, n), n, seed=seed)
        texts = [ex["prompt"] + ex["completion"] for ex in to_sft_examples(rows, config.prompts.template)]
        lengths = [len(encoding.ids) + 1 for encoding in tokenizer.encode_batch(texts)]  # + end of sequence
        shares = [real_share(lengths, config.train.batch_size, seed=s) for s in range(ns.shuffles)]
        by_seed[str(seed)] = {
            "rows": len(rows),
            "min_tokens": min(lengths),
            "mean_tokens": round(statistics.fmean(lengths), 1),
            "max_tokens": max(lengths),
            "real_over_padded": round(statistics.fmean(shares), 4),
        }
    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "overrides": ns.overrides,
            "batch_size": config.train.batch_size,
            "shuffles": ns.shuffles,
            "by_seed": by_seed,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
