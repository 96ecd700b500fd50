"""Evaluation step: greedy held-out accuracy with a 95% interval (the promotion rule is in tasks/gate.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from configs.schema import CampaignConfig
from models.loading import load_policy, set_torch_threads
from models.sampling import HFSampler, SamplingEngine
from tasks.gate import should_promote  # noqa: F401  (moved to tasks/gate.py; old importers still work)
from tasks.judging.verifier import VerifierJudge
from tasks.progress import Progress
from tasks.prompts import few_shot_prefix
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RunContext


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_greedy(
    engine: SamplingEngine,
    heldout: Sequence[Record],
    *,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    prefix: str = "",
) -> tuple[list[Record], dict[str, float]]:
    """Answer every held-out prompt greedily (behind `prefix`, if any) and score it with the verifier.

    Returns:
        The scored records and `accuracy`, `ci_low`, `ci_high`, `items`.
    """
    inputs = [template.format(prompt=row["prompt"]) for row in heldout]
    outputs = engine.sample(
        inputs,
        n=1,
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=0,
        batch_size=batch_size,
        progress=Progress("evaluate", "prompts"),
        prefix=prefix,
    )
    rows = [{**row, "response": out[0]} for row, out in zip(heldout, outputs, strict=True)]
    scores = VerifierJudge().score(rows)
    rows = [{**row, "score": score} for row, score in zip(rows, scores, strict=True)]
    correct = sum(1 for s in scores if s >= 0.5)
    low, high = wilson_interval(correct, len(rows))
    return rows, {"accuracy": correct / max(len(rows), 1), "ci_low": low, "ci_high": high, "items": len(rows)}


@task(name="evaluate", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)  # resumable (flows/resume.py)
def evaluate_task(
    config: CampaignConfig, policy: ModelRef, heldout: DatasetRef, out_path: str, ctx: RunContext
) -> dict[str, float]:
    """Score a policy on the held-out prompts; write `evaluated.jsonl`, log `eval/*` metrics."""
    set_torch_threads(config.model.torch_threads)
    model, tokenizer = load_policy(policy.base, policy.adapter)
    prefix = few_shot_prefix(config) if config.evaluate.few_shot else ""
    started = time.perf_counter()
    rows, metrics = evaluate_greedy(
        HFSampler(model, tokenizer),
        read_records(heldout),
        template=config.prompts.template,
        max_new_tokens=config.evaluate.max_new_tokens,
        stop=config.generate.stop,
        batch_size=config.generate.batch_size,
        prefix=prefix,
    )
    metrics["seconds"] = time.perf_counter() - started
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), policy=policy, heldout=heldout, few_shot_prefix=prefix)
    ctx.log_metrics({f"eval/{k}": v for k, v in metrics.items()})
    ctx.log_dataset(ref, name=f"round-{ctx.step}-evaluated", context="evaluation")
    return metrics
