"""The ablation arms under configs/experiments/ validate, and the new train/select/monitor fields reject bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config
from flows.ablation import check_comparable

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_config_validates(path: Path) -> None:
    config = load_config(str(path))
    assert config.name == path.stem


def test_the_arms_are_comparable_and_cover_the_recipes() -> None:
    configs = [load_config(str(p)) for p in EXPERIMENTS]
    check_comparable(configs)
    assert {c.train.method for c in configs} >= {"sft", "dpo", "superhf"}
    with pytest.raises(ValueError, match="'seed'"):
        check_comparable([configs[0], load_config(str(EXPERIMENTS[1]), ["seed=5"])])


def test_new_fields_have_their_defaults() -> None:
    config = load_config("tiny")
    assert config.train.method == "sft" and config.train.dpo_reference == "policy" and config.train.kl_weight == 0.1
    assert config.select.diversity == "none" and config.select.gold_share == 0.0
    assert config.monitor.max_flip_rate is None and config.monitor.embedding_rows == 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.method=ppo", "train.method"),
        ("train.dpo_beta=0", "train.dpo_beta"),
        ("train.dpo_pairs=length", "train.dpo_pairs"),
        ("train.dpo_reference=ema", "train.dpo_reference"),
        ("train.kl_weight=-1", "train.kl_weight"),
        ("train.dpo_sft_weight=-0.5", "train.dpo_sft_weight"),
        ("select.gold_share=1.0", "select.gold_share"),
        ("select.diversity=random", "select.diversity"),
        ("select.diversity_clusters=0", "select.diversity_clusters"),
        ("select.near_duplicate=0", "select.near_duplicate"),
        ("monitor.max_flip_rate=1.5", "monitor.max_flip_rate"),
        ("monitor.distinct_n=0", "monitor.distinct_n"),
        ("monitor.embedding_rows=-1", "monitor.embedding_rows"),
    ],
)
def test_bad_values_name_their_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_good_values_load() -> None:
    config = load_config(
        "tiny",
        ["train.method=dpo", "train.dpo_pairs=correct", "train.dpo_reference=base", "select.diversity=kmeans"]
        + ["select.gold_share=0.25", "select.near_duplicate=0.8", "monitor.max_flip_rate=0.1"],
    )
    assert config.train.dpo_reference == "base" and config.select.gold_share == 0.25


def test_the_warm_start_config_is_the_measured_run() -> None:
    """configs/gemma-warm-start.yaml is what benchmarks/results/gold_warm_start_run.txt ran as overrides of the
    default of that day (configs/few-shot-start.yaml), the name aside, so its figures describe it."""
    measured = load_config(
        "few-shot-start",
        [
            "prompts.working=ones_all",
            "select.gold_examples=300",
            "generate.max_new_tokens=40",
            "evaluate.max_new_tokens=40",
            "rounds=2",
            "name=gemma-warm-start",
        ],
    )
    assert load_config("gemma-warm-start") == measured


def test_the_default_is_the_measured_warm_start() -> None:
    """configs/default.yaml is what benchmarks/results/warm_start_rounds.txt measured (section 5: gemma-warm-start
    with generate.from_round=2 in the digit working with 44 new tokens), the name aside; gemma-warm-start with
    generate.from_round=2 alone is the previous default (section 2), configs/few-shot-start.yaml the one before.
    Since section 29 its few-shot baseline shows plain examples, which changes no round, only that bar."""
    digits = ["prompts.working=digits", "generate.max_new_tokens=44", "evaluate.max_new_tokens=44"]
    bar = "evaluate.few_shot_working=plain"
    measured = load_config("gemma-warm-start", ["generate.from_round=2", *digits, bar, "name=gemma-arithmetic"])
    assert load_config("default") == measured
    assert load_config("few-shot-start").select.gold_examples == 0
