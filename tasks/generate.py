"""Generation step: the current policy samples k responses per training prompt."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from prefect import task

from configs.schema import CampaignConfig, GenerateConfig
from models.loading import set_torch_threads, shared_policy
from models.sampling import HFSampler, ProgressFn, SamplingEngine
from tasks.layout import RESUMABLE
from tasks.progress import Progress, emit
from tasks.prompts import ChatFormat, chat_format, few_shot_prefix, uses_few_shot
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.sharding import map_shards
from tasks.tracking import RoundContext


def generate_responses(
    engine: SamplingEngine,
    prompts: Sequence[Record],
    cfg: GenerateConfig,
    *,
    template: str,
    seed: int,
    progress: ProgressFn | None = None,
    prefix: str = "",
    chat: ChatFormat | None = None,
) -> list[Record]:
    """Sample `cfg.k` responses for every prompt; one output record per (prompt, sample).

    `prefix` (the few-shot examples) goes before every templated prompt; records keep the bare prompt.
    With `chat` (`prompts.chat`), the templated prompt is the user's turn of the chat template instead, behind
    the chat's own turns (`prefix` is then unused), and responses are the assistant's replies.
    A prompt's samples are seeded by (`seed`, its `id`, sample index), so shards of whole sampler batches
    (`tasks.sharding.shard_plan`) give the same rows.
    """
    inputs = [template.format(prompt=row["prompt"]) for row in prompts]
    if chat is not None:
        prefix, inputs = chat.inputs(inputs)
    responses = engine.sample(
        inputs,
        n=cfg.k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        stop=cfg.stop,
        seed=seed,
        batch_size=cfg.batch_size,
        progress=progress,
        prefix=prefix,
        prompt_ids=[str(row.get("id", row["prompt"])) for row in prompts],
    )
    return [
        {**row, "sample": index, "response": text}
        for row, texts in zip(prompts, responses, strict=True)
        for index, text in enumerate(texts)
    ]


def sample_policy(
    config: CampaignConfig, policy: ModelRef, records: Sequence[Record], *, seed: int, prefix: str
) -> tuple[list[Record], int]:
    """The policy's samples of `records` (in process, or across Ray workers with `generate.shards`) and the count
    of tokens sampled in process. The policy stays loaded for the round's other stages."""
    model, tokenizer = shared_policy(policy.base, policy.adapter)
    engine = HFSampler(model, tokenizer)
    step = partial(
        generate_responses,
        cfg=config.generate,
        template=config.prompts.template,
        seed=seed,
        prefix=prefix,
        chat=chat_format(config, tokenizer, few_shot=bool(prefix)),
    )
    emit(f"generate: starting on {len(records)} prompts, {config.generate.k} samples each")
    if config.generate.shards > 1:
        rows = map_shards(
            policy,
            records,
            step,
            shards=config.generate.shards,
            field="generate.shards",
            scale=config.scale,
            threads=config.model.torch_threads,
        )
    else:
        rows = step(engine, records, progress=Progress("generate", "samples"))
    return rows, engine.tokens_generated


@task(name="generate", **RESUMABLE)
def generate_task(
    config: CampaignConfig, policy: ModelRef, prompts: DatasetRef, out_path: str, ctx: RoundContext
) -> DatasetRef:
    """Load the policy, sample, write `generated.jsonl` with its lineage, log metrics and data. A round before
    `generate.from_round` samples nothing (it trains on `select.gold_examples` alone) and loads no model."""
    set_torch_threads(config.model.torch_threads)
    seed = ctx.seed
    sampling = ctx.round >= config.generate.from_round
    prefix = few_shot_prefix(config) if sampling and uses_few_shot(config, ctx.round) else ""
    started = time.perf_counter()
    rows, tokens = (
        ([], 0) if not sampling else sample_policy(config, policy, read_records(prompts), seed=seed, prefix=prefix)
    )
    seconds = time.perf_counter() - started
    ref = write_records(out_path, rows)
    write_lineage(
        Path(out_path), policy=policy, prompts=prompts, seed=seed, generate=config.generate, few_shot_prefix=prefix
    )
    ctx.log_metrics(
        {
            "generate/samples": len(rows),
            "generate/seconds": seconds,
            "generate/tokens_per_s": tokens / max(seconds, 1e-9),
            "generate/mean_chars": sum(len(r["response"]) for r in rows) / max(len(rows), 1),
            "generate/few_shot": float(bool(prefix)),
        }
    )
    ctx.log_dataset(ref, name=f"round-{ctx.round}-generated", context="generated")
    return ref
