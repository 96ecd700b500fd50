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
from tasks.progress import Progress
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


@task(name="generate", **RESUMABLE)
def generate_task(
    config: CampaignConfig, policy: ModelRef, prompts: DatasetRef, out_path: str, ctx: RoundContext
) -> DatasetRef:
    """Load the policy, sample, write `generated.jsonl` with its lineage, log metrics and data."""
    set_torch_threads(config.model.torch_threads)
    model, tokenizer = shared_policy(policy.base, policy.adapter)  # kept loaded for the round's other stages
    engine = HFSampler(model, tokenizer)
    seed = ctx.seed
    prefix = few_shot_prefix(config) if uses_few_shot(config, ctx.round) else ""
    chat = chat_format(config, tokenizer, few_shot=bool(prefix))
    started = time.perf_counter()
    records = read_records(prompts)
    if config.generate.shards > 1:
        step = partial(
            generate_responses,
            cfg=config.generate,
            template=config.prompts.template,
            seed=seed,
            prefix=prefix,
            chat=chat,
        )
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
        rows = generate_responses(
            engine,
            records,
            config.generate,
            template=config.prompts.template,
            seed=seed,
            progress=Progress("generate", "samples"),
            prefix=prefix,
            chat=chat,
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
            "generate/tokens_per_s": engine.tokens_generated / max(seconds, 1e-9),
            "generate/mean_chars": sum(len(r["response"]) for r in rows) / max(len(rows), 1),
            "generate/few_shot": float(bool(prefix)),
        }
    )
    ctx.log_dataset(ref, name=f"round-{ctx.round}-generated", context="generated")
    return ref
