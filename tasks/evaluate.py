"""Evaluation step: greedy accuracy on a prompt set with a 95% interval (the promotion rule is in tasks/gate.py).

With `evaluate.resample_failed_working: k`, an answer whose own working fails the label-free check of
`tasks.judging.verifier.shows_work` is sampled k times more and replaced by the first sample whose working holds
(`resample_failed_working`); the greedy figures are kept beside (`greedy_accuracy` and its interval).

Accuracy is strict: credit only for one final answer in the expected form (`judge.answer_pattern`, see
`tasks.judging.verifier`). Two diagnostics travel with it: `lenient_accuracy` (the last "answer is N", else
the last number) and `format_rate` (share of responses in the expected form, right or wrong), so a gain
that is only the policy learning the format shows as such.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from prefect import task
from pydantic import BaseModel, ConfigDict

from configs.schema import DEFAULT_ANSWER_PATTERN, CampaignConfig
from models.loading import set_torch_threads, shared_policy
from models.sampling import HFSampler, SamplingEngine
from tasks.judging.verifier import is_correct, shows_work, verify_rows
from tasks.layout import RESUMABLE
from tasks.progress import Progress
from tasks.prompts import ChatFormat, chat_format, few_shot_prefix, item_problem
from tasks.records import DatasetRef, ModelRef, Record, read_records, write_lineage, write_records
from tasks.sharding import ShardStep, map_shards
from tasks.stats import clustered_interval, wilson_interval
from tasks.tracking import RoundContext

__all__ = [
    "Evaluation",
    "evaluate_greedy",
    "evaluate_task",
    "greedy_rows",
    "metric_prefix",
    "resample_failed_working",
    "score_responses",
    "wilson_interval",
]


def score_responses(
    rows: Sequence[Record],
    answer_pattern: str = DEFAULT_ANSWER_PATTERN,
    problem_of: Callable[[Mapping[str, object]], str] | None = None,
) -> tuple[list[Record], dict[str, float]]:
    """Score responses against their answers with the strict verifier, keeping the lenient reading beside it.

    Args:
        rows: Records with `response` and `answer`.
        answer_pattern: The expected form of a final answer (one group).
        problem_of: Each row's problem (`tasks.prompts.item_problem`), stamped on it as `problem`: rewordings of
            one problem count as one group in the interval (`tasks.stats.clustered_interval`). None: every
            row is its own problem.

    Returns:
        The rows with `score` (1.0 strict credit, else 0.0), `correct`, `lenient_correct` and `in_form` (and
        `problem`); and `accuracy` (strict), `ci_low`, `ci_high` (95%, Wilson's over the problems), `problems`,
        `lenient_accuracy`, `format_rate`, `items`.

    Raises:
        ValueError: no rows to score.
    """
    if not rows:
        raise ValueError("nothing to score: no rows")
    scored = [{**row, "score": 1.0 if row["correct"] else 0.0} for row in verify_rows(rows, answer_pattern)]
    if problem_of is not None:
        for row in scored:
            row["problem"] = problem_of(row)
    total = len(scored)
    correct = sum(1 for row in scored if row["correct"])
    groups = problem_groups(scored)
    low, high = clustered_interval([row["score"] for row in scored], groups)
    return scored, {
        "accuracy": correct / total,
        "ci_low": low,
        "ci_high": high,
        "problems": len(set(groups)),
        "lenient_accuracy": sum(1 for row in scored if row["lenient_correct"]) / total,
        "format_rate": sum(1 for row in scored if row["in_form"]) / total,
        "items": total,
    }


def problem_groups(rows: Sequence[Record]) -> list[object]:
    """Each scored row's group for an interval: its `problem` where `score_responses` stamped one, else its own."""
    return [row.get("problem") or index for index, row in enumerate(rows)]


def greedy_interval(rows: Sequence[Record]) -> dict[str, float]:
    """The 95% interval of the greedy answers' accuracy (`greedy_correct`, beside a resampled `response`), over
    the rows' problems as the accuracy's own: `greedy_ci_low`, `greedy_ci_high`."""
    low, high = clustered_interval([1.0 if row["greedy_correct"] else 0.0 for row in rows], problem_groups(rows))
    return {"greedy_ci_low": low, "greedy_ci_high": high}


def evaluate_greedy(
    engine: SamplingEngine,
    heldout: Sequence[Record],
    *,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    prefix: str = "",
    answer_pattern: str = DEFAULT_ANSWER_PATTERN,
) -> tuple[list[Record], dict[str, float]]:
    """Answer every prompt greedily (behind `prefix`, if any) and score it (`score_responses`).

    Returns:
        The scored records and `accuracy`, `ci_low`, `ci_high`, `lenient_accuracy`, `format_rate`, `items`.
    """
    rows = answer_greedy(
        engine,
        heldout,
        template=template,
        max_new_tokens=max_new_tokens,
        stop=stop,
        batch_size=batch_size,
        prefix=prefix,
    )
    return score_responses(rows, answer_pattern)


def answer_greedy(
    engine: SamplingEngine,
    heldout: Sequence[Record],
    *,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    prefix: str = "",
    chat: ChatFormat | None = None,
) -> list[Record]:
    """Each record with its greedy `response` (behind `prefix`, if any; with `chat`, the assistant's reply to
    the templated prompt as a chat turn, `tasks.prompts.ChatFormat`); a shard's step when sharded."""
    prefix, inputs = model_inputs(heldout, template, prefix, chat)
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
    return [{**row, "response": out[0]} for row, out in zip(heldout, outputs, strict=True)]


def model_inputs(rows: Sequence[Record], template: str, prefix: str, chat: ChatFormat | None) -> tuple[str, list[str]]:
    """The prefix and the inputs the engine is given for `rows`: each prompt templated, as a chat turn with `chat`."""
    inputs = [template.format(prompt=row["prompt"]) for row in rows]
    return chat.inputs(inputs) if chat is not None else (prefix, inputs)


# Runs a shard step on rows across workers (`map_shards` with the campaign's settings) and returns its rows in order.
Shard = Callable[[list[Record], ShardStep], list[Record]]


def resample_failed_working(
    engine: SamplingEngine,
    answered: Sequence[Record],
    *,
    k: int,
    temperature: float,
    top_p: float,
    seed: int,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    prefix: str = "",
    chat: ChatFormat | None = None,
    answer_pattern: str = DEFAULT_ANSWER_PATTERN,
    shard: Shard | None = None,
) -> tuple[list[Record], dict[str, float]]:
    """Verified resampling: where a greedy answer's own working fails `shows_work` (a check that reads no
    reference answer), sample `k` answers and take the first whose working holds; otherwise keep the greedy one.

    Samples are seeded by (`seed`, the row's `id`, sample index), so a row's draws do not depend on the others.

    Args:
        engine: The policy's sampler (unused when `shard` samples).
        answered: Records with their greedy `response` (`answer_greedy`).
        k: Samples per failing answer, at least 1.
        temperature, top_p: The sampling settings (the campaign's `generate.*`).
        seed: The campaign's seed.
        template, max_new_tokens, stop, batch_size, prefix, chat: As the greedy answers were given.
        answer_pattern: The expected form of a final answer.
        shard: With `evaluate.shards` above 1, how the failing rows' sampling (`resample_working`) is spread
            over Ray workers, as the greedy pass was; None: `engine` samples them in this process.

    Returns:
        The records, each with `greedy_response`, `greedy_correct` and `resampled` (whether its response was
        replaced) beside the `response` now scored; and `greedy_accuracy` (strict), `working_fails` (greedy
        answers whose working failed) and `resampled` (those replaced).
    """
    failing = [index for index, row in enumerate(answered) if not shows_work(row["response"], answer_pattern)]
    step = partial(
        resample_working,
        k=k,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        template=template,
        max_new_tokens=max_new_tokens,
        stop=stop,
        batch_size=batch_size,
        prefix=prefix,
        chat=chat,
        answer_pattern=answer_pattern,
    )
    rows = [answered[index] for index in failing]
    kept = [] if not rows else shard(rows, step) if shard is not None else step(engine, rows)
    held = {index: row["response"] for index, row in zip(failing, kept, strict=True)}
    out: list[Record] = []
    for index, row in enumerate(answered):
        greedy = row["response"]
        response = held.get(index, greedy)
        out.append(
            {
                **row,
                "response": response,
                "greedy_response": greedy,
                "greedy_correct": is_correct(greedy, row.get("answer"), answer_pattern),
                "resampled": response != greedy,
            }
        )
    return out, {
        "greedy_accuracy": sum(1 for row in out if row["greedy_correct"]) / len(out) if out else 0.0,
        "working_fails": float(len(failing)),
        "resampled": float(sum(1 for row in out if row["resampled"])),
    }


def resample_working(
    engine: SamplingEngine,
    rows: list[Record],
    *,
    k: int,
    temperature: float,
    top_p: float,
    seed: int,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
    prefix: str = "",
    chat: ChatFormat | None = None,
    answer_pattern: str = DEFAULT_ANSWER_PATTERN,
) -> list[Record]:
    """`resample_failed_working`'s sampling (a shard's step when sharded): each row, whose greedy working failed,
    with the first of `k` samples whose working holds as its `response`, or its greedy one when none holds."""
    prefix, inputs = model_inputs(rows, template, prefix, chat)
    samples = engine.sample(
        inputs,
        n=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        batch_size=batch_size,
        progress=Progress("evaluate: resampling failed working", "samples"),
        prefix=prefix,
        prompt_ids=[str(row.get("id", row["prompt"])) for row in rows],
    )
    return [
        {**row, "response": next((text for text in texts if shows_work(text, answer_pattern)), row["response"])}
        for row, texts in zip(rows, samples, strict=True)
    ]


def greedy_rows(rows: Sequence[Record]) -> list[Record]:
    """Evaluated rows as greedy decoding scored them (`resample_failed_working` keeps `greedy_response` and
    `greedy_correct` beside what it scored); the lenient reading was of the scored response only, so it is left
    out."""
    return [
        {
            **{key: value for key, value in row.items() if key != "lenient_correct"},
            "response": row["greedy_response"],
            "correct": row["greedy_correct"],
            "score": float(row["greedy_correct"]),
        }
        for row in rows
    ]


def metric_prefix(split: str) -> str:
    """Where a split's figures go in MLflow: validation `val/`, test `test/`, the OOD slice `test/ood_` (so its
    accuracy is `test/ood_accuracy`), an extra set `extra/<name>/`."""
    return {"validation": "val/", "test": "test/", "ood": "test/ood_"}.get(split, f"{split}/")


class Evaluation(BaseModel):
    """A policy scored on one prompt set: the scored rows (a reference) and the figures (`score_responses`).

    Attributes:
        split: which set ("validation", "test", "ood" or `extra/<name>`).
        ref: the scored rows (`id`, `response`, `score`, `correct`, `lenient_correct`, `in_form`).
        metrics: `accuracy`, `ci_low`, `ci_high`, `lenient_accuracy`, `format_rate`, `items`, `seconds`.
    """

    model_config = ConfigDict(frozen=True)

    split: str
    ref: DatasetRef
    metrics: dict[str, float]

    @property
    def accuracy(self) -> float:
        """Strict accuracy."""
        return self.metrics["accuracy"]


def shard_rows(
    config: CampaignConfig, policy: ModelRef, rows: list[Record], step: ShardStep, name: str | None = None
) -> list[Record]:
    """`step` on `rows` over `evaluate.shards` Ray workers (`map_shards`, its task runs called `name`): a small set
    (the OOD slice, the few answers resampled) gets at most one shard per row."""
    return map_shards(
        policy,
        rows,
        step,
        shards=min(config.evaluate.shards, len(rows)),
        field="evaluate.shards",
        scale=config.scale,
        threads=config.model.torch_threads,
        name=name,
    )


@task(name="evaluate", task_run_name="evaluate-{split}-round-{ctx.round}", **RESUMABLE)
def evaluate_task(
    config: CampaignConfig,
    policy: ModelRef,
    prompts: DatasetRef,
    out_path: str,
    ctx: RoundContext,
    split: str = "validation",
) -> Evaluation:
    """Score a policy greedily on `prompts` (the `split` set), then resample answers whose working fails
    (`evaluate.resample_failed_working`); write the scored rows and log their figures under `metric_prefix(split)`
    at the context's round."""
    set_torch_threads(config.model.torch_threads)
    model, tokenizer = shared_policy(policy.base, policy.adapter)  # kept loaded: the next round samples from it
    prefix = few_shot_prefix(config) if config.evaluate.few_shot else ""
    chat = chat_format(config, tokenizer, few_shot=bool(prefix))
    started = time.perf_counter()
    answer = partial(  # its keywords are how every answer of the set is asked for, greedy or resampled
        answer_greedy,
        template=config.prompts.template,
        max_new_tokens=config.evaluate.max_new_tokens,
        stop=config.generate.stop,
        batch_size=config.generate.batch_size,
        prefix=prefix,
        chat=chat,
    )
    records = read_records(prompts)
    shard = partial(shard_rows, config, policy) if config.evaluate.shards > 1 else None
    answered = shard(records, answer) if shard is not None else answer(HFSampler(model, tokenizer), records)
    resampling: dict[str, float] = {}
    if config.evaluate.resample_failed_working:
        answered, resampling = resample_failed_working(
            HFSampler(model, tokenizer),
            answered,
            k=config.evaluate.resample_failed_working,
            temperature=config.generate.temperature,
            top_p=config.generate.top_p,
            seed=config.seed,
            answer_pattern=config.judge.answer_pattern,
            shard=partial(shard, name="evaluate resampling") if shard is not None else None,
            **answer.keywords,
        )
    rows, metrics = score_responses(answered, config.judge.answer_pattern, item_problem(config))
    metrics |= resampling | (greedy_interval(rows) if resampling else {})
    metrics["seconds"] = time.perf_counter() - started
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), policy=policy, heldout=prompts, few_shot_prefix=prefix)
    ctx.log_metrics({f"{metric_prefix(split)}{k}": v for k, v in metrics.items()})
    named = "" if split == "validation" else f"-{split.replace('/', '-')}"
    ctx.log_dataset(ref, name=f"round-{ctx.round}{named}-evaluated", context=f"evaluation{named}")
    return Evaluation(split=split, ref=ref, metrics=metrics)
