"""The prompts section's splits and the answer pattern: old names, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import ConfigError, load_config


def test_heldout_names_are_deprecated_aliases_of_validation() -> None:
    config = load_config("tiny", ["prompts.heldout_size=40"])
    assert config.prompts.validation_size == 40 and config.prompts.heldout_size == 40
    assert "heldout_size" not in config.prompts.model_dump()
    assert load_config("tiny", ["prompts.validation_size=50", "prompts.heldout_size=40"]).prompts.validation_size == 40


def test_a_file_giving_both_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text("prompts:\n  heldout_size: 40\n  validation_size: 50\n")
    with pytest.raises(ConfigError, match="prompts.heldout_size is the old name of prompts.validation_size"):
        load_config(str(path))


def test_file_source_needs_only_a_training_file() -> None:
    config = load_config("tiny", ["prompts.source=file", "prompts.train_path=t.jsonl"])
    assert config.prompts.validation_path is None and config.prompts.test_path is None
    with pytest.raises(ConfigError, match="prompts.train_path is required"):
        load_config("tiny", ["prompts.source=file"])


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("answer (a)(b)", "judge.answer_pattern: must have exactly one group (the answer), found 2"),
        ("answer is \\d+", "judge.answer_pattern: must have exactly one group (the answer), found 0"),
        ("answer is (\\d+", "judge.answer_pattern: not a valid regular expression (missing ), unterminated"),
    ],
)
def test_answer_pattern_needs_exactly_one_group(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", [f"judge.answer_pattern={pattern}"])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_extra_set_names_must_differ() -> None:
    sets = "evaluate.extra_sets=[{name: a, path: x.jsonl}, {name: a, path: y.jsonl}]"
    with pytest.raises(ConfigError, match="two extra sets are named 'a'"):
        load_config("tiny", [sets])
