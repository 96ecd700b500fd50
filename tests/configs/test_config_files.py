"""Config files and overrides: syntax errors name file, line and column; duplicate keys, non-UTF-8 files,
directories, booleans as counts, NaN and infinity, unsafe names and oversized values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import ConfigError, is_override, load_config, split_args
from configs.schema import CampaignConfig


def _error(path: str | Path | None, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return str(err.value)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 2\ngenerate:\n  k: 4\n   temperature: 1.0\n")
    message = _error(bad)
    assert message.startswith(f"{bad}, line 4, column 15: not valid YAML: mapping values are not allowed here")
    assert "\n" not in message


def test_duplicate_keys_are_an_error_with_file_line_and_key(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("rounds: 2\ngenerate:\n  k: 4\n  temperature: 1.0\n  k: 64\n")
    assert _error(dup) == f"{dup}, line 5: duplicate key 'k' (first at line 3)"


def test_the_same_key_in_two_sections_is_not_a_duplicate(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("generate:\n  max_new_tokens: 8\nevaluate:\n  max_new_tokens: 9\n")
    config = load_config(ok)
    assert (config.generate.max_new_tokens, config.evaluate.max_new_tokens) == (8, 9)


def test_a_yaml_merge_key_brings_its_keys_and_a_key_below_it_wins(tmp_path: Path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("generate: &g\n  max_new_tokens: 8\nevaluate:\n  <<: *g\n")
    assert load_config(merged).evaluate.max_new_tokens == 8
    merged.write_text("generate: &g\n  max_new_tokens: 8\nevaluate:\n  <<: *g\n  max_new_tokens: 9\n")
    assert load_config(merged).evaluate.max_new_tokens == 9
    merged.write_text("generate: &g\n  max_new_tokens: 8\nevaluate:\n  <<: *g\n  k: 1\n  k: 2\n")
    assert _error(merged) == f"{merged}, line 6: duplicate key 'k' (first at line 5)"


def test_non_utf8_config_names_its_file(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert _error(latin) == f"{latin}: not UTF-8 text (invalid continuation byte at byte 9)"


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    assert _error(tmp_path) == f"{tmp_path}: is a directory, not a config file"


def test_an_endless_or_huge_file_is_not_read_to_its_end(tmp_path: Path) -> None:
    assert _error("/dev/zero") == "/dev/zero: larger than 1 MiB, not a config file"  # it has no end
    big = tmp_path / "big.yaml"
    big.write_text("rounds: 2\n" + "# padding\n" * 120_000)
    assert _error(big) == f"{big}: larger than 1 MiB, not a config file"


def test_a_path_with_equals_sign_is_a_path_not_an_override(tmp_path: Path) -> None:
    config_file = tmp_path / "lr=1e-4.yaml"
    config_file.write_text("rounds: 2\n")
    assert split_args([str(config_file), "generate.k=2"]) == (str(config_file), ["generate.k=2"])
    assert load_config(*split_args([str(config_file)])).rounds == 2
    assert split_args(["generate.k=2", "rounds=1"]) == (None, ["generate.k=2", "rounds=1"])
    assert is_override("judge.cascade.model.source=tiny")
    assert not is_override("configs/a=b.yaml")
    assert not is_override("colour=red")


def test_an_unknown_key_as_first_argument_says_so(tmp_path: Path) -> None:
    path, overrides = split_args(["train.learnig_rate=0.1"])
    assert _error(path, *overrides) == (
        "train.learnig_rate=0.1: neither a config file nor an override of a known field (did you mean 'learning_rate'?)"
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("rounds=yes", "rounds: expected a number, got the boolean true"),
        ("generate.k=true", "generate.k: expected a number, got the boolean true"),
        ("train.epochs=no", "train.epochs: expected a number, got the boolean false"),
        ("seed=on", "seed: expected a number, got the boolean true"),
        ("select.threshold=.nan", "select.threshold: Input should be a finite number (got nan)"),
        ("train.epochs=.inf", "train.epochs: Input should be a finite number (got inf)"),
        ("generate.temperature=-.inf", "generate.temperature: Input should be a finite number (got -inf)"),
        ("select.near_duplicate=.nan", "select.near_duplicate: Input should be a finite number (got nan)"),
        ("train.target_modules=[]", "train.target_modules: name at least one module"),
        ("train.target_modules=''", "train.target_modules: name at least one module"),
        ("tracking.experiment=''", "tracking.experiment: must not be empty"),
        ("model.name=foo", "model: name is 'foo', and source 'tiny' would ignore it: set source hub or local"),
        ("judge.model.name=foo", "judge.model: name is 'foo', and source 'tiny' would ignore it"),
        ("name=../../../x", "name: '../../../x' is not a safe name for folders and MLflow"),
        ("name=a/b", "name: 'a/b' is not a safe name"),
        ("name=it's", 'name: "it\'s" is not a safe name'),
        ("name=a:b", "name: 'a:b' is not a safe name"),
        ("name=.hidden", "name: '.hidden' is not a safe name"),
        ("tracking.experiment=a/b", "tracking.experiment: 'a/b' is not a safe name"),
        ("prompts.template='Q: {question}'", "prompts.template: unknown placeholder {question}"),
        (
            "prompts.template='Q: {{prompt}}'",
            "prompts.template: must contain the placeholder {prompt}, or the model never",
        ),
        ("prompts.template='Q: {prompt'", "prompts.template: not a valid format string"),
        ("prompts.template='Q: {}'", "prompts.template: unknown placeholder {}"),
        (
            "generate.k=100000",
            "generate.k=100000 is above its sane bound of 64; set limits.allow_large=true to allow it",
        ),
        ("prompts.test_size=50000", "prompts.test_size=50000 is above its sane bound of 10,000"),
        ("train.epochs=500", "train.epochs=500.0 is above its sane bound of 20"),
        ("generate.max_new_tokens=5000", "generate.max_new_tokens=5000 is above its sane bound of 1,024"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(override: str, expected: str) -> None:
    message = _error("tiny", override)
    assert expected in message
    assert "\n" not in message


def test_a_long_template_is_refused_unless_allowed() -> None:
    template = "x" * 5000 + " {prompt}"
    assert _error("tiny", f"prompts.template='{template}'") == (
        "prompts.template is 5,009 characters long, above its sane bound of 4,000; set limits.allow_large=true to "
        "allow it"
    )
    assert load_config("tiny", [f"prompts.template='{template}'", "limits.allow_large=true"]).prompts.template


def test_allow_large_exceeds_the_bounds_and_is_left_out_of_the_dump_while_off() -> None:
    config = load_config("tiny", ["generate.k=100000", "limits.allow_large=true"])
    assert config.generate.k == 100000
    assert config.model_dump()["limits"] == {"allow_large": True}
    # Off (the default) it is not dumped: campaign identities and MLflow params of existing campaigns stay put.
    assert "limits" not in load_config("tiny").model_dump()
    assert CampaignConfig.model_validate(config.model_dump(mode="json")) == config


def test_every_bound_is_documented_in_its_description() -> None:
    from configs.loader import describe_schema

    text = describe_schema()
    assert "At most 64 unless limits.allow_large is true." in text
    schema = CampaignConfig.model_json_schema()
    assert schema["$defs"]["GenerateConfig"]["properties"]["k"]["soft_max"] == 64
