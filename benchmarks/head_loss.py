"""Measure the LM head's share of an SFT step: the loss with its logged entropy, fused or as before.

`models.losses.completion_loss` applies Gemma's head (262,144 tokens x 640) to the completion positions only;
what remains per step is the head's matmul, the softmax over the vocabulary for the loss, its backward, and
the entropy logged beside the loss. Four arms, on one batch's worth of completion positions (the default
campaign's round-1 gold rows average 267 per batch of 8), with random weights of Gemma's shapes:

- `separate`: `F.cross_entropy` forward and backward, then the entropy from a second log-softmax, an exp and
  a product, and the argmax accuracy (selftrain's loss until this benchmark);
- `fused`: `models.losses.CrossEntropyWithEntropy` (one softmax for loss, gradient and entropy) and the argmax;
- `no_stats`: `F.cross_entropy` forward and backward alone, the floor of the whole-logits arms;
- `chunked`: `models.losses.ChunkedHeadCrossEntropy` (the trainer's for a frozen head: the head, loss, gradient,
  entropy and top token in one pass over `HEAD_CHUNK`-row slices of the vocabulary, no whole logits).

Each repeat times the arms in turn (median over repeats after a warm-up, CPU seconds of this process
with `--threads` torch threads); the ratios are within this one run. Appends to
`benchmarks/results/head_loss.jsonl` with the git commit.

Run: `.venv/bin/python benchmarks/head_loss.py [--tokens 267] [--repeats 7] [--threads 2] [--chunk 4096]` (about
a minute).
"""

# ruff: noqa: E402  (the project root goes on sys.path before its modules are imported)

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
import torch.nn.functional as F

from benchmarks._results import append_line
from benchmarks._timing import interleaved_cpu_medians
from models.losses import HEAD_CHUNK, ChunkedHeadCrossEntropy, CrossEntropyWithEntropy
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "head_loss.jsonl"
HIDDEN, VOCAB = 640, 262_144  # Gemma 3 270M


def arms(hidden: torch.Tensor, head: torch.Tensor, labels: torch.Tensor, chunk: int) -> dict[str, Callable[[], None]]:
    """The four ways of taking one batch's loss and statistics through the head, each with its backward."""

    def separate() -> None:
        h = hidden.clone().requires_grad_()
        logits = h @ head.T
        F.cross_entropy(logits, labels, reduction="sum").backward()
        with torch.no_grad():
            log_probs = logits.log_softmax(-1)
            _entropy = -(log_probs.exp() * log_probs).sum(-1)
            _correct = logits.argmax(-1) == labels

    def fused() -> None:
        h = hidden.clone().requires_grad_()
        logits = h @ head.T
        nll, _entropy = CrossEntropyWithEntropy.apply(logits, labels)
        nll.backward()
        with torch.no_grad():
            _correct = logits.argmax(-1) == labels

    def no_stats() -> None:
        h = hidden.clone().requires_grad_()
        F.cross_entropy(h @ head.T, labels, reduction="sum").backward()

    def chunked() -> None:
        h = hidden.clone().requires_grad_()
        nll, _entropy, top = ChunkedHeadCrossEntropy.apply(h, head, labels, chunk)
        nll.backward()
        _correct = top == labels

    return {"separate": separate, "fused": fused, "no_stats": no_stats, "chunked": chunked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=267, help="completion positions per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=HEAD_CHUNK, help="vocabulary rows per pass of `chunked`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = torch.randn(VOCAB, HIDDEN) * 0.03
    hidden = torch.randn(args.tokens, HIDDEN)
    labels = torch.randint(0, VOCAB, (args.tokens,))
    median = interleaved_cpu_medians(arms(hidden, head, labels, args.chunk), args.repeats)
    append_line(
        RESULTS,
        {
            "commit": git_commit(),
            "date": datetime.date.today().isoformat(),
            "tokens": args.tokens,
            "threads": args.threads,
            "repeats": args.repeats,
            "cpu_seconds_median": {name: round(value, 4) for name, value in median.items()},
            "fused_over_separate": round(median["fused"] / median["separate"], 3),
            "fused_over_no_stats": round(median["fused"] / median["no_stats"], 3),
            "chunk": args.chunk,
            "chunked_over_fused": round(median["chunked"] / median["fused"], 3),
        },
    )


if __name__ == "__main__":
    main()
