"""What Meta Ranking costs per target, with the references' KV caches reused and without, and against pointwise.

Targets are arithmetic problems from the training split with a right or an off-by-one answer, references
a balanced panel of other problems (no generation needed, so every figure is judge cost alone). Each
target is compared with `--references` references (all of the panel, so every reference's cache serves
every target). Measured in one run, on the judge model (default: Gemma 3 270M base, the default judge),
for two prompt shapes: the bare comparison prompt, and the prompt opened by the default campaign's
few-shot worked examples (three, as `prompts.few_shot=3`; `judge.examples=true`). Reports seconds and
forward passes per target and token positions fed to the model, and the ratios:

- no reuse / reuse: what sharing the reference prefix saves (goal: >= 3x on the few-shot prompts);
- Meta Ranking (reuse) / pointwise: what comparing with references costs over asking once.

Writes `benchmarks/results/meta_ranking.json`. Usage:
    .venv/bin/python benchmarks/meta_ranking.py [--model gemma|tiny] [--targets 16] [--references 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs.loader import load_config  # noqa: E402
from models.loading import load_policy, set_torch_threads  # noqa: E402
from models.option_scorer import OptionScorer  # noqa: E402
from tasks.arithmetic import sample_problems  # noqa: E402
from tasks.base_model import cache_root, prepare_base  # noqa: E402
from tasks.judging.lm import OPTIONS, PointwiseJudge  # noqa: E402
from tasks.judging.meta_ranking import MetaRankingJudge  # noqa: E402
from tasks.prompts import few_shot_prefix  # noqa: E402
from tasks.tracking import git_commit  # noqa: E402

TEMPLATE = "Question: {prompt}\nAnswer:"


def rows(n_targets: int, n_references: int) -> tuple[list[dict], list[dict]]:
    """(targets, references): every other one right, the rest off by one."""
    problems = sample_problems(n_targets + n_references, split="train", seed=11)

    def row(p: dict, right: bool) -> dict:
        wrong = p["solution"].replace(f"is {p['answer']}.", f"is {int(p['answer']) + 1}.")
        return {"prompt": p["prompt"], "response": p["solution"] if right else wrong, "correct": right}

    refs = [row(p, i % 2 == 0) for i, p in enumerate(problems[:n_references])]
    return [row(p, i % 2 == 0) for i, p in enumerate(problems[n_references:])], refs


def measure(judge: object, targets: list[dict], scorer: OptionScorer) -> dict:
    """Seconds, forward passes and token positions per target of one scoring pass."""
    tokens = scorer.tokens
    started = time.perf_counter()
    judge.score(targets)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    n = len(targets)
    return {
        "seconds_per_target": seconds / n,
        "forward_passes_per_target": judge.forward_passes / n,  # type: ignore[attr-defined]
        "tokens_per_target": (scorer.tokens - tokens) / n,
    }


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["gemma", "tiny"], default="gemma")
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--references", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timings per judge; the fastest is kept")
    parser.add_argument("--shapes", default="bare,few-shot", help="prompt shapes: bare, few-shot")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "meta_ranking.json"))
    ns = parser.parse_args()
    set_torch_threads(1)
    source = "packaged-gemma" if ns.model == "gemma" else "tiny"
    config = load_config(None, [f"model.source={source}", "prompts.few_shot=3"])
    if ns.model == "gemma":
        from models.gemma import ensure_packaged_gemma

        base = str(ensure_packaged_gemma(cache_root() / "models"))
    else:
        base = prepare_base(config).base
    model, tokenizer = load_policy(base)
    scorer = OptionScorer(model, tokenizer, OPTIONS, batch_size=ns.batch_size)
    targets, refs = rows(ns.targets, ns.references)
    MetaRankingJudge(scorer, refs, template=TEMPLATE, references=1).score(targets[:1])  # warm-up, not timed
    results: dict = {}
    shapes = {"bare": "", "few-shot": few_shot_prefix(config)}
    for shape in ns.shapes.split(","):
        preamble = shapes[shape]
        judges = {
            "meta_ranking_reuse": MetaRankingJudge(
                scorer, refs, template=TEMPLATE, references=ns.references, preamble=preamble
            ),
            "meta_ranking_no_reuse": MetaRankingJudge(
                scorer, refs, template=TEMPLATE, references=ns.references, preamble=preamble, reuse_cache=False
            ),
            "pointwise": PointwiseJudge(scorer, template=TEMPLATE, preamble=preamble),
        }
        # Repeats in alternating order, best time kept: the machine is shared and its load drifts.
        figures: dict = {}
        for repeat in range(ns.repeats):
            for name in list(judges) if repeat % 2 == 0 else list(judges)[::-1]:
                got = measure(judges[name], targets, scorer)
                if name not in figures or got["seconds_per_target"] < figures[name]["seconds_per_target"]:
                    figures[name] = got
        for name in judges:
            print(f"{shape:>9} {name:<22} " + "  ".join(f"{k} {v:.3f}" for k, v in figures[name].items()))
        reuse, plain, point = (figures[k] for k in ("meta_ranking_reuse", "meta_ranking_no_reuse", "pointwise"))
        figures["ratios"] = {
            "no_reuse_over_reuse_seconds": plain["seconds_per_target"] / reuse["seconds_per_target"],
            "no_reuse_over_reuse_tokens": plain["tokens_per_target"] / reuse["tokens_per_target"],
            "reuse_over_pointwise_seconds": reuse["seconds_per_target"] / point["seconds_per_target"],
            "no_reuse_over_pointwise_seconds": plain["seconds_per_target"] / point["seconds_per_target"],
        }
        print(f"{shape:>9} ratios " + "  ".join(f"{k} {v:.2f}" for k, v in figures["ratios"].items()))
        results[shape] = figures
    payload = {
        "commit": git_commit(),
        "model": ns.model,
        "targets": ns.targets,
        "references": ns.references,
        "batch_size": ns.batch_size,
        "repeats": ns.repeats,
        "results": results,
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
