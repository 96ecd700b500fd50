"""Preparing the starting policy: resolve the configured model source to a loadable base directory."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from configs.schema import CampaignConfig
from models.gemma import PackagedModelError, ensure_packaged_gemma
from models.integrity import HUB_PATTERNS, check_record, directory_sha256, has_record, hub_snapshot
from models.tiny import ensure_tiny_model
from tasks.arithmetic import sample_problems
from tasks.progress import Progress
from tasks.records import ModelRef

TINY_WARMUP_PROBLEMS = 512
TINY_CORPUS_PROBLEMS = 2000
# The tiny base plays a pretrained model that learned the task from noisy seed data: a share of its
# warm-up solutions are off by one. It knows the task but answers unreliably, so verified
# self-training has something real to fix (curation acting as preference optimisation).
TINY_NOISE_SHARE = 0.6
TINY_SEED = 0  # the tiny base is a fixed 'pretrained' model, shared by campaigns of any seed


class ModelSourceError(ValueError):
    """The configured model cannot be found or loaded; the message says what to do."""


def cache_root() -> Path:
    """Where built or converted models are cached: $SELFTRAIN_CACHE, else ~/.cache/selftrain."""
    return Path(os.environ.get("SELFTRAIN_CACHE", Path.home() / ".cache" / "selftrain"))


def fingerprint(base: str | Path, *, download: bool = False) -> str:
    """The content hash of a base model: the sha256 of its weight, tokenizer and config bytes.

    Each file is hashed once and then trusted while its size and mtime stay the same (see
    `models.integrity`): a cached check of the 1.1 GB Gemma costs milliseconds, its first hash seconds.

    Args:
        base: A model directory, or a hub id (hashed through its local snapshot of `HUB_PATTERNS` files).
        download: For a hub id, fetch missing snapshot files first; else the local cache must hold them.

    Raises:
        DamagedModelError: a directory selftrain built, or a hub blob, no longer holds its recorded bytes.
        ModelSourceError: a hub id whose snapshot is neither cached nor reachable.
    """
    path = Path(base)
    if path.is_dir():
        if has_record(path):  # built by selftrain: checked against the hashes recorded at build time
            return check_record(path, fix=f"run selftrain again to rebuild it, or clear it with `rm -rf {path}`")
        return directory_sha256(path, cache_root() / "fingerprints.json")
    try:
        snapshot = hub_snapshot(str(base), download=download)
    except (OSError, ValueError) as error:
        raise ModelSourceError(
            f"model.name {base}: no local snapshot and the hub cannot serve one ({error})"
        ) from error
    fix = f"clear it with `hf cache rm model/{base}` and run again"
    return directory_sha256(snapshot, cache_root() / "fingerprints.json", patterns=HUB_PATTERNS, fix=fix)


def tiny_inputs(config: CampaignConfig) -> tuple[list[str], list[tuple[str, str]]]:
    """The tokenizer corpus and warm-up pairs for the tiny model, drawn from the task's train split."""
    prompts = config.prompts
    train_problems = functools.partial(
        sample_problems,
        split="train",
        min_operand=prompts.min_operand,
        max_operand=prompts.max_operand,
        operations=prompts.operations,
    )
    corpus_rows = train_problems(TINY_CORPUS_PROBLEMS, seed=4321)
    corpus = [prompts.template.format(prompt=r["prompt"]) + r["solution"] for r in corpus_rows]
    warmup_rows = train_problems(TINY_WARMUP_PROBLEMS, seed=1234)
    noise = random.Random(TINY_SEED)
    warmup = [
        (
            prompts.template.format(prompt=r["prompt"]),
            _off_by_one(r) if noise.random() < TINY_NOISE_SHARE else r["solution"],
        )
        for r in warmup_rows
    ]
    return corpus, warmup


def _off_by_one(problem: dict) -> str:
    """The problem's worked solution with a result one too high, as a systematically biased source would write."""
    right, wrong = problem["answer"], str(int(problem["answer"]) + 1)
    return problem["solution"].replace(f"= {right}.", f"= {wrong}.").replace(f"is {right}.", f"is {wrong}.")


def prepare_base(config: CampaignConfig) -> ModelRef:
    """Resolve `config.model` to a ModelRef without an adapter (the round-0 policy).

    Raises:
        ModelSourceError: a local directory that does not exist or holds no config.json, or the packaged
            Gemma's package is not installed.
    """
    source = config.model
    if source.source == "tiny":
        corpus, warmup = tiny_inputs(config)
        progress = Progress("tiny model", "steps")
        path = ensure_tiny_model(
            cache_root() / "models",
            corpus,
            warmup,
            steps=source.tiny_warmup_steps,
            seed=TINY_SEED,
            progress=progress.line,
        )
        return ModelRef(source="tiny", base=str(path), sha256=fingerprint(path))
    if source.source == "packaged-gemma":
        try:
            path = ensure_packaged_gemma(cache_root() / "models", progress=Progress("gemma conversion", "").line)
        except PackagedModelError as error:
            raise ModelSourceError(f"model.source packaged-gemma: {error}") from error
        return ModelRef(source="packaged-gemma", base=str(path), sha256=fingerprint(path))
    if source.source == "local":
        path = Path(str(source.name)).expanduser().resolve()
        if not (path / "config.json").exists():
            raise ModelSourceError(f"model.name: {path} is not a model directory (no config.json)")
        return ModelRef(source="local", base=str(path), sha256=fingerprint(path))
    return ModelRef(source="hub", base=str(source.name), sha256=fingerprint(str(source.name), download=True))


@task(name="prepare-policy", cache_policy=NO_CACHE)
def prepare_base_task(config: CampaignConfig) -> ModelRef:
    """Prefect wrapper of `prepare_base`."""
    return prepare_base(config)
