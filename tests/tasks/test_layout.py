"""The campaign folder layout, the round seed rule and where each split's figures go."""

from __future__ import annotations

from pathlib import Path

from tasks.evaluate import metric_prefix
from tasks.layout import ADAPTER, DATA_FILES, JUDGED, CampaignLayout, evaluated_name, round_seed


def test_round_seed_is_the_one_rule() -> None:
    assert round_seed(0, 0) == 0
    assert round_seed(7, 3) == 7003
    assert len({round_seed(seed, index) for seed in range(3) for index in range(10)}) == 30  # no collisions


def test_layout_names_every_file_of_a_campaign() -> None:
    layout = CampaignLayout(Path("/w"))
    assert layout.round_dir(3) == Path("/w/round-03")
    assert layout.in_round(12, JUDGED) == Path("/w/round-12/judged.jsonl")
    assert layout.in_round(1, ADAPTER) == Path("/w/round-01/adapter")
    assert layout.evaluated(0) == Path("/w/round-00/evaluated.jsonl")  # the starting policy on validation
    assert layout.evaluated(2, "test") == Path("/w/round-02/test-evaluated.jsonl")
    assert layout.evaluated(2, "extra/gsm") == Path("/w/round-02/extra-gsm-evaluated.jsonl")
    assert layout.split_prompts("validation") == Path("/w/validation.jsonl")
    assert layout.split_prompts("extra/gsm") == Path("/w/extra-gsm.jsonl")
    assert (layout.config, layout.plot) == (Path("/w/config.json"), Path("/w/accuracy.png"))
    assert evaluated_name("validation") in DATA_FILES  # what reproduce compares is what a round writes


def test_each_split_logs_under_its_own_prefix() -> None:
    assert metric_prefix("validation") + "accuracy" == "val/accuracy"
    assert metric_prefix("test") + "ci_low" == "test/ci_low"
    assert metric_prefix("ood") + "accuracy" == "test/ood_accuracy"
    assert metric_prefix("extra/gsm") + "accuracy" == "extra/gsm/accuracy"
