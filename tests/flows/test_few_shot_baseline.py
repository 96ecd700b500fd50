"""The few-shot baseline's examples: the campaign's working, or the one `evaluate.few_shot_working` names."""

from __future__ import annotations

from configs.loader import load_config
from tasks.prompts import few_shot_prefix


def test_the_default_campaign_scores_its_base_behind_plain_examples() -> None:
    config = load_config("default")
    assert config.prompts.working == "digits" and config.evaluate.few_shot_working == "plain"
    shot = config.few_shot_baseline_config()
    assert shot.evaluate.few_shot and not config.evaluate.few_shot  # held-out prompts behind the examples
    # The plain examples of the campaign's seed: configs/few-shot-start.yaml's, which benchmarks/few_shot_bar.py uses.
    assert few_shot_prefix(shot) == few_shot_prefix(load_config("few-shot-start"))
    assert "Answer: 7 + 5 = 12. The answer is 12." in few_shot_prefix(shot)
    assert "1 - 0 - 1 = 0." in few_shot_prefix(config)  # the campaign's own examples show the digit working
    # Only the baseline changes: the campaign, its rounds and its other passes keep the digit working.
    assert shot.model_copy(update={"evaluate": config.evaluate, "prompts": config.prompts}) == config


def test_without_it_the_baseline_uses_the_campaigns_working() -> None:
    config = load_config("default", ["evaluate.few_shot_working=null"])
    assert "evaluate.few_shot_working" not in config.model_dump_json()  # unset: as configs before the field
    shot = config.few_shot_baseline_config()
    assert few_shot_prefix(shot) == few_shot_prefix(config.model_copy(update={"evaluate": shot.evaluate}))
    assert shot.prompts.working == "digits"
