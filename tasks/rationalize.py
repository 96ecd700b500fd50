"""STaR rationalization: for training prompts the policy failed, sample again with the answer as a hint.

Zelikman et al. (2022) found that rejection sampling alone starves on the problems a policy cannot yet
solve: no sample is verified, so nothing is learnt from them. Rationalization shows the correct answer as
a hint (`generate.hint`), keeps the responses that verify (strict answer and, under `judge.require_work`,
right working) and trains on them against the bare prompt, hint removed, so the policy learns to produce
the working without being told the answer. Kept rows carry `source: rationalized`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from prefect import task

from configs.schema import CampaignConfig, GenerateConfig
from models.loading import set_torch_threads, shared_policy
from models.sampling import HFSampler, SamplingEngine
from tasks.curriculum import passed
from tasks.generate import generate_responses
from tasks.judging.verifier import is_correct, shows_work
from tasks.layout import RESUMABLE
from tasks.prompts import few_shot_prefix, uses_few_shot
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RoundContext

SOURCE = "rationalized"
RATIONALIZED = "rationalized.jsonl"  # in the round folder: the judged rows plus the kept rationales


def failed_prompts(judged: Sequence[Record]) -> list[Record]:
    """The prompts (`id`, `prompt`, `answer`, in first-seen order) that have an answer and none of whose policy
    samples passed (`tasks.curriculum.passed`); rows another source added do not count as the policy's."""
    by_prompt: dict[str, Record] = {}
    solved: set[str] = set()
    for row in judged:
        if row.get("source") is not None or row.get("answer") is None:
            continue
        by_prompt.setdefault(row["id"], {k: row[k] for k in ("id", "prompt", "answer") if k in row})
        if passed(row):
            solved.add(row["id"])
    return [prompt for key, prompt in by_prompt.items() if key not in solved]


def rationalize(
    engine: SamplingEngine,
    failed: Sequence[Record],
    cfg: GenerateConfig,
    *,
    template: str,
    seed: int,
    answer_pattern: str,
    require_work: bool,
    prefix: str = "",
) -> list[Record]:
    """Sample `cfg.k` hinted responses per failed prompt and keep those that verify, with the bare prompt.

    Args:
        engine: The policy's sampler.
        failed: Prompts none of whose samples passed (`failed_prompts`).
        cfg: Sampling settings (k, temperature, ...) and the hint (`cfg.hint`).
        template: The policy's prompt template; the hinted question goes where `{prompt}` is.
        seed: Seed of the sampling.
        answer_pattern: The expected form of a final answer.
        require_work: Keep only responses that show right working (`shows_work`).
        prefix: The round's few-shot prefix, if it samples behind one.

    Returns:
        Judged-style rows `{"id", "prompt" (bare), "answer", "sample", "response", "score": 1.0, "correct": True,
        "source": "rationalized", "hint"}`; `work` True too under `require_work`.
    """
    hinted = [{**row, "hint": cfg.hint.format(prompt=row["prompt"], answer=row["answer"])} for row in failed]
    shown = [{**row, "prompt": row["hint"]} for row in hinted]
    rows = generate_responses(engine, shown, cfg, template=template, seed=seed, prefix=prefix)
    kept = []
    for row, source in zip(rows, (row for row in hinted for _ in range(cfg.k)), strict=True):
        if not is_correct(row["response"], source["answer"], answer_pattern):
            continue
        if require_work and not shows_work(row["response"], answer_pattern):
            continue
        out = {**row, "prompt": source["prompt"], "score": 1.0, "correct": True, "source": SOURCE}
        kept.append(out | ({"work": True} if require_work else {}))
    return kept


@task(name="rationalize", **RESUMABLE)
def rationalize_task(
    config: CampaignConfig, policy: ModelRef, judged: DatasetRef, out_path: str, ctx: RoundContext
) -> DatasetRef:
    """Rationalize the round's failed prompts; write the judged rows plus the kept rationales to `out_path`
    (what selection and training read), log `rationalize/*` metrics and the data."""
    rows = read_records(judged)
    failed = failed_prompts(rows)
    kept: list[Record] = []
    started = time.perf_counter()
    if failed:
        set_torch_threads(config.model.torch_threads)
        engine = HFSampler(*shared_policy(policy.base, policy.adapter))  # the policy generate loaded
        prefix = few_shot_prefix(config) if uses_few_shot(config, ctx.round) else ""
        kept = rationalize(
            engine,
            failed,
            config.generate,
            template=config.prompts.template,
            seed=ctx.seed + 1,  # apart from the round's own samples
            answer_pattern=config.judge.answer_pattern,
            require_work=config.requires_work,
            prefix=prefix,
        )
    ref = write_records(out_path, [*rows, *kept])
    write_lineage(Path(out_path), judged=judged, policy=policy, hint=config.generate.hint, seed=ctx.seed + 1)
    ctx.log_metrics(
        {
            "rationalize/prompts": float(len(failed)),
            "rationalize/kept": float(len(kept)),
            "rationalize/prompts_kept": float(len({row["id"] for row in kept})),
            "rationalize/seconds": time.perf_counter() - started,
        }
    )
    ctx.log_dataset(ref, name=f"round-{ctx.round}-rationalized", context="rationalized")
    return ref
