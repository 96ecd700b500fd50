"""train.init, train.grpo and generate.from_round: settings that cannot work are one-line config errors naming the
fields."""

from __future__ import annotations

import pytest

from configs.loader import ConfigError, load_config


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["train.init=base", "start_from=champion"], ["train.init", "start_from"]),
        (["train.init=base", "train.method=dpo"], ["train.init", "train.method"]),
        (["train.method=grpo", "train.batch_size=4", "train.grpo.num_generations=3"], ["num_generations"]),
        (
            ["train.method=grpo", "train.batch_size=4", "train.grpo.generation_batch_size=6"],
            ["generation_batch_size", "train.batch_size"],
        ),
        (["generate.from_round=2"], ["generate.from_round", "select.gold_examples"]),
        (
            ["generate.from_round=2", "select.gold_examples=5", "train.method=dpo"],
            ["generate.from_round", "train.method"],
        ),
        (["train.warm_start_epochs=1"], ["train.warm_start_epochs", "generate.from_round"]),
        (["train.base_dtype=bfloat16", "train.method=superhf"], ["train.base_dtype", "train.method"]),
        (["train.average_from=0.5", "train.method=superhf"], ["train.average_from", "train.method"]),
        (["train.average_from=1.0"], ["train.average_from"]),
        (
            ["train.neftune_alpha=40", "train.method=dpo", "train.init=continue"],
            ["train.neftune_alpha", "train.method"],
        ),
        (["train.neftune_alpha=0"], ["train.neftune_alpha", "greater than 0"]),
        (["train.base_dtype=float16"], ["train.base_dtype", "bfloat16"]),
        (
            ["train.head_dtype=bfloat16", "train.method=dpo", "train.init=continue"],
            ["train.head_dtype", "train.method"],
        ),
        # Refused before a run, where they had failed in it or trained nothing:
        (["seed=-1"], ["seed"]),
        (["seed=20261206"], ["seed", "4294966"]),  # round seeds (seed * 1000 + round) must fit numpy's 32 bits
        (["train.method=dpo", "train.init=continue", "generate.k=1"], ["train.method=dpo", "generate.k"]),
        (["train.method=grpo", "prompts.train_size=2"], ["train.method=grpo", "prompts.train_size=2"]),
        (["evaluate.few_shot_baseline=true", "prompts.few_shot=0"], ["evaluate.few_shot_baseline", "prompts.few_shot"]),
        (["prompts.test_path=test.jsonl"], ["prompts.test_path", "prompts.source"]),
        (["select.threshold=2"], ["select.threshold", "less than or equal to 1"]),  # judge scores are 0..1
    ],
)
def test_settings_that_cannot_work_name_their_fields(overrides: list[str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("tiny", overrides)
    message = str(error.value)
    assert "\n" not in message and all(name in message for name in names), message


def test_grpo_with_whole_groups_and_batches_and_rest_em_with_sft_are_accepted() -> None:
    config = load_config("tiny", ["train.method=grpo", "train.batch_size=4", "train.grpo.generation_batch_size=8"])
    assert (config.train.grpo.generation_batch_size, config.train.grpo.num_generations) == (8, 4)
    assert load_config("tiny", ["train.init=base"]).train.init == "base"
    assert load_config("tiny").train.init == "continue"  # today's behaviour stays the default


def test_warm_start_epochs_apply_to_the_rounds_before_the_first_that_samples() -> None:
    config = load_config("tiny", ["generate.from_round=3", "select.gold_examples=5", "train.warm_start_epochs=0.5"])
    assert [config.train_for_round(n).epochs for n in (1, 2, 3, 4)] == [0.5, 0.5, 2.0, 2.0]
    assert config.train_for_round(3) is config.train
    unset = load_config("tiny", ["generate.from_round=2", "select.gold_examples=5"])
    assert unset.train_for_round(1) is unset.train  # empty: every round trains train.epochs
    assert "warm_start_epochs" not in unset.model_dump()["train"]  # left out of the dump: identities unchanged


@pytest.mark.parametrize("field", ["base_dtype", "head_dtype"])
def test_training_dtypes_default_to_float32_and_stay_out_of_the_dump(field: str) -> None:
    assert getattr(load_config("tiny").train, field) == "float32"
    assert field not in load_config("tiny").model_dump()["train"]  # identities of past configs unchanged
    assert load_config("tiny", [f"train.{field}=bfloat16"]).model_dump()["train"][field] == "bfloat16"
