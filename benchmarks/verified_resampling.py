"""Does a policy reach further when an answer whose own working fails is sampled again? A probe, chooses nothing.

The built-in task's answers state their working ("9 + 5 = 14. 3 + 3 = 6. 39 + 35 = 64."), and whether every stated
computation holds and the last equals the final answer is checkable without the reference answer
(`tasks.judging.verifier.shows_work`, the training filter's check). Seed 0's final policy mostly fails beyond the
training range by dropping a carry, which leaves a false statement in its working. Decoding that answers greedily
and, when the greedy answer's working fails that label-free check, samples `--k` answers (the campaign's
temperature) and takes the first whose working holds, is test-time compute with a verifier, as in ReST-EM's and
STaR's own evaluations by sampling; it needs no reference answer, so it could score every set the same way.

This script measures it on one finished round's policy, on the campaign's 200 validation problems and the OOD
development slice (`working_probe.ood_development`: no problem of a reported OOD slice); test and the OOD test
slices stay untouched. Pairs are (only greedy right, only the resampled decoding right), exact McNemar.

    .venv/bin/python benchmarks/verified_resampling.py runs/CAMPAIGN/round-02 --k 4

Appends one JSON line to `benchmarks/results/verified_resampling.jsonl`. A campaign decodes every set this way with
`evaluate.resample_failed_working: k` (`tasks.evaluate.resample_failed_working`; measured in section 51), which seeds
each row's samples by its id where this probe seeds them by the prompt's text, so the two pick different samples.
"""

# ruff: noqa: E402  (offline settings before transformers is imported)

from __future__ import annotations

import os

for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import append_line
from benchmarks.ood_development import open_round_probe, probe_slices, score
from benchmarks.working_probe import credit, rate
from models.gemma import ensure_packaged_gemma
from models.loading import load_policy, merged_for_inference
from models.sampling import HFSampler
from tasks.base_model import cache_root
from tasks.judging.verifier import is_correct, shows_work
from tasks.stats import mcnemar_exact, paired_counts
from tasks.tracking import git_commit

RESULTS = ROOT / "benchmarks" / "results" / "verified_resampling.jsonl"


def main() -> int:
    """Greedy, then resampling where the greedy working fails; one line with both and their pairs."""
    ns, round_dir, config, adapter = open_round_probe(
        __doc__.splitlines()[0], lambda parser: parser.add_argument("--k", type=int, default=4)
    )
    base = str(ensure_packaged_gemma(cache_root() / "models"))
    model, tokenizer = load_policy(base, adapter)
    model = merged_for_inference(model)
    engine = HFSampler(model, tokenizer)
    slices = probe_slices(config, ns.n)
    line: dict[str, object] = {"commit": git_commit(), "round": str(round_dir), "k": ns.k}
    for name, problems in slices.items():
        started = time.perf_counter()
        greedy = score(model, tokenizer, config, problems)
        failing = [index for index, row in enumerate(greedy) if not shows_work(row["response"])]
        samples = engine.sample(
            [config.prompts.template.format(prompt=greedy[index]["prompt"]) for index in failing],
            n=ns.k,
            temperature=config.generate.temperature,
            top_p=config.generate.top_p,
            max_new_tokens=config.evaluate.max_new_tokens,
            stop=config.generate.stop,
            seed=config.seed,
            batch_size=config.generate.batch_size,
        )
        resampled = [dict(row) for row in greedy]
        replaced = 0
        for index, texts in zip(failing, samples, strict=True):
            held = next((text for text in texts if shows_work(text)), None)
            if held is not None:
                replaced += 1
                resampled[index] = {
                    **greedy[index],
                    "response": held,
                    "correct": is_correct(held, greedy[index]["answer"]),
                }
        pairs = paired_counts(
            [float(row["correct"]) for row in resampled], [float(row["correct"]) for row in greedy]
        )  # b: only greedy right; c: only the resampled decoding right
        only_greedy, only_resampled = pairs.b, pairs.c
        line[name] = {
            "greedy": {**rate(greedy), "credit": credit(greedy)},
            "resampled": {**rate(resampled), "credit": credit(resampled)},
            "working_fails": len(failing),
            "replaced": replaced,
            "only_greedy": only_greedy,
            "only_resampled": only_resampled,
            "p": mcnemar_exact(only_greedy, only_resampled),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, {key: value for key, value in line[name].items() if key not in ("greedy", "resampled")})
        print("  greedy", rate(greedy), " resampled", rate(resampled))
    append_line(RESULTS, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
