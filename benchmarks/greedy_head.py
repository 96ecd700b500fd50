"""Measure greedy decoding through the bfloat16 screen of Gemma's head (`models.greedy_head`) against the float32 head.

Two parts, on the packaged Gemma 3 270M (converted on first use):

- `head`: one decoding step's head on 128 rows of real hidden states (the last prompt position of 128 arithmetic
  questions): `torch.argmax` of the float32 logits against `ScreenedGreedyHead`; CPU seconds, interleaved, median
  over repeats; the tokens must agree.
- `pass`: `HFSampler` answering the same prompts greedily, bare and behind a 3-shot prefix, with the screen on and
  off in turn (wall seconds; the answers must be the same).

The screen pays only where the CPU has bfloat16 instructions (AVX512-BF16 or AMX); elsewhere the `pass` arms are
the same code and the `head` arm runs emulated bfloat16. Appends to `benchmarks/results/greedy_head.jsonl` with the
git commit and whether this CPU has the instructions.

Run: `.venv/bin/python benchmarks/greedy_head.py [--prompts 128] [--repeats 5] [--threads 2]` (about 3 minutes).
"""

# ruff: noqa: E402  (offline settings and the project root before transformers and its modules are imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import argparse
import datetime
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

from benchmarks._results import append_line
from benchmarks._timing import interleaved_cpu_medians
from models.gemma import ensure_packaged_gemma
from models.greedy_head import ScreenedGreedyHead
from models.loading import cpu_has_bfloat16, load_policy, set_torch_threads
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "greedy_head.jsonl"
PREFIX = (
    "Question: What is 3 plus 4?\nAnswer: 3 + 4 = 7. The answer is 7.\n\n"
    "Question: What is 12 minus 5?\nAnswer: 12 - 5 = 7. The answer is 7.\n\n"
    "Question: What is 8 plus 9?\nAnswer: 8 + 9 = 17. The answer is 17.\n\n"
)


def questions(n: int) -> list[str]:
    """`n` arithmetic questions in the default template, seeded."""
    rng = random.Random(0)
    return [
        f"Question: What is {rng.randint(10, 99)} {rng.choice(['plus', 'minus'])} {rng.randint(1, 9)}?\nAnswer:"
        for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_torch_threads(args.threads)
    model, tokenizer = load_policy(str(ensure_packaged_gemma(cache_root() / "models")))
    prompts = questions(args.prompts)

    head = model.get_output_embeddings()
    screened = ScreenedGreedyHead(head.weight)
    with torch.inference_mode():
        hidden = model.model(**tokenizer(prompts, return_tensors="pt", padding=True)).last_hidden_state[:, -1]
        same_tokens = torch.equal(screened(hidden), head(hidden).argmax(dim=-1))
        cpu = interleaved_cpu_medians(
            {"float32": lambda: head(hidden).argmax(dim=-1), "screened": lambda: screened(hidden)}, args.repeats
        )

    passes: dict[str, dict[str, float]] = {}
    same_answers = True
    for name, prefix in (("bare", ""), ("few_shot", PREFIX)):
        answers, seconds = {}, {}
        for screen in (True, False):
            sampler = HFSampler(model, tokenizer, screen_greedy_head=screen)
            started = time.perf_counter()
            answers[screen] = sampler.sample(
                prompts,
                n=1,
                temperature=0.0,
                top_p=1.0,
                max_new_tokens=44,
                stop=["\n"],
                seed=0,
                batch_size=128,
                prefix=prefix,
            )
            seconds["screened" if screen else "float32"] = round(time.perf_counter() - started, 2)
        same_answers &= answers[True] == answers[False]
        passes[name] = seconds | {"ratio": round(seconds["screened"] / seconds["float32"], 3)}

    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "date": datetime.date.today().isoformat(),
            "cpu_has_bfloat16": cpu_has_bfloat16(),
            "threads": args.threads,
            "rows": args.prompts,
            "head_cpu_seconds_median": {name: round(value, 4) for name, value in cpu.items()},
            "head_ratio": round(cpu["screened"] / cpu["float32"], 3),
            "same_tokens": same_tokens,
            "pass_wall_seconds": passes,
            "same_answers": same_answers,
        },
    )


if __name__ == "__main__":
    main()
