"""Config loading: shipped YAMLs validate, overrides apply, bad values name the field and the reason."""

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from configs.loader import CONFIG_DIR, ConfigError, describe_schema, flatten, load_config, repeated_overrides

SHIPPED = sorted(CONFIG_DIR.rglob("*.yaml"))


def test_there_are_shipped_configs() -> None:
    assert "tiny.yaml" in {p.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.rounds >= 1


def test_overrides_parse_yaml_values() -> None:
    config = load_config("tiny", ["generate.k=8", "train.learning_rate=1e-4", 'generate.stop=["Q:", "\\n"]'])
    assert config.generate.k == 8
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.generate.stop == ["Q:", "\n"]


def test_a_mapping_for_a_section_sets_its_fields_and_keeps_the_files_others() -> None:
    base = load_config("tiny", [])
    config = load_config("tiny", ["prompts={train_size: 7, template: 'Q: {prompt}'}", "train={lora_r: 2}"])
    assert (config.prompts.train_size, config.prompts.template, config.train.lora_r) == (7, "Q: {prompt}", 2)
    assert config.prompts.test_size == base.prompts.test_size != type(base.prompts)().test_size  # the file's value
    assert config.generate.stop == base.generate.stop
    assert load_config("tiny", ["generate.stop=[x]"]).generate.stop == ["x"]  # a list still replaces


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("rounds=0", "rounds: Input should be greater than or equal to 1"),
        ("generate.k=0", "generate.k: Input should be greater than or equal to 1"),
        ("generate.top_p=1.5", "generate.top_p: Input should be less than or equal to 1"),
        ("generate.k=many", "generate.k: Input should be a valid integer"),
        ("train.learnig_rate=0.1", "train.learnig_rate: unknown field (did you mean 'learning_rate'?)"),
        ("colour=red", "colour: unknown field"),
        ("model.source=hub", "model: name is required when source is 'hub'"),
        ("prompts.min_operand=20", "prompts.min_operand must not exceed prompts.max_operand"),
        ("evaluate.few_shot_working=plain", "evaluate.few_shot_baseline is off"),
        ("evaluate.few_shot_working=long", "evaluate.few_shot_working: Input should be 'plain', 'ones'"),
        (  # unquoted, YAML reads "Q: {question}" as a mapping
            "prompts.template=Q: {question}",
            "prompts.template: Input should be a valid string (got the mapping {'Q': {'question': None}}: YAML "
            "reads 'key: value' as one; quote the text)",
        ),
    ],
)
def test_bad_values_name_field_and_reason(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert expected in str(err.value)


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(None, ["=3"])
    with pytest.raises(ConfigError) as split:  # `prompts={train_size: 7}` unquoted: the shell gives "7}" alone
        load_config(None, ["prompts={train_size:", "7}"])
    assert str(split.value) == (
        "override '7}': expected dotted.key=value (a value with spaces must be quoted, as in "
        "'prompts={train_size: 7}', or the shell splits it)"
    )
    with pytest.raises(ConfigError, match=re.escape("give the whole list: select.filters=[...]")):
        load_config(None, ["select.filters.0.kind=perplexity"])
    # YAML 1.1 reads a leading 0 as octal and colons as base 60: the number would not be the one shown.
    for item, shown in (
        ("seed=010", "'010' reads in YAML as the number 8 (octal"),
        ("rounds=1:30", "'1:30' reads in YAML as the number 90 (base 60)"),
    ):
        with pytest.raises(ConfigError, match=rf"^override {item.partition('=')[0]}: {re.escape(shown)}"):
            load_config(None, [item])
    octal = tmp_path / "octal.yaml"
    octal.write_text("name: x\nseed: 010\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(octal))}, line 2: '010' reads in YAML as the number 8"):
        load_config(octal)
    assert [load_config(None, [f"seed={raw}"]).seed for raw in ("0", "10", "0x10", "1_000", "'010'")] == [
        0,
        10,
        16,
        1000,
        10,
    ]
    for item in (".rounds=3", "generate..k=3", "rounds.=3"):  # a stray dot: an empty name, not an unknown field
        key = item.partition("=")[0]
        with pytest.raises(
            ConfigError, match=rf"^override '{re.escape(item)}': an empty field name in '{re.escape(key)}'"
        ):
            load_config(None, [item])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    # A known field given as the config, its value forgotten: the message says what an override looks like.
    with pytest.raises(
        ConfigError, match=r"^generate\.k: config file not found; an override needs a value: generate\.k=VALUE$"
    ):
        load_config("generate.k")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    # A file not saved yet or cut short would otherwise run every field's default; `{}` asks for that.
    for text in ("", "# rounds: 3\n"):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=r"bad.yaml: holds no fields \(empty, or comments only\); write \{\}"):
            load_config(bad)
    bad.write_text("{}\n")
    assert load_config(bad) == load_config(None)


def test_flatten_and_schema_cover_every_field() -> None:
    flat = flatten(load_config("tiny"))
    assert flat["generate.k"] == "4"
    assert flat["model.source"] == "tiny"
    text = describe_schema()
    for key in flat:
        assert key.split(".")[-1] + ":" in text


def test_schema_shows_the_fields_of_optional_sections_and_list_items() -> None:
    # judge.cascade (optional), select.filters (a list of kinds) and evaluate.extra_sets (a list) print empty by
    # default; their fields follow, commented out, so `selftrain schema` names every field a YAML file may set.
    text = describe_schema()
    assert "  cascade: None  # " in text
    assert "    # when set, CascadeConfig: " in text
    assert "    #   max_new_tokens: 24  # int. Longest answer of the stronger model" in text
    for kind in ("PerplexityFilter", "ConfidenceFilter", "ColorFilter", "DsirFilter"):
        assert f"    # each item, {kind}: " in text
    assert "    #   buckets: 4096  # int." in text
    assert "    #   path: <required>  # str. JSONL (or a .json array of objects), CSV or Parquet" in text


class _Inner(BaseModel):
    k: int = 4
    rate: float = 0.0001
    stop: list[str] = ["Q:", "end"]
    path: str | None = None
    on: bool = False


class _Outer(BaseModel):
    name: str = "yes"
    inner: _Inner = _Inner()
    table: dict[str, int] = {"a": 1}
    sets: list[dict[str, str]] = [{"name": "gsm", "path": "g.jsonl"}]
    template: str = "Q: {p}\nA:"
    big: float = 1e20


def test_flatten_by_hand() -> None:
    # Sections and plain dicts nest with dots; every leaf is one line that YAML reads back as its value: a string
    # bare unless YAML would read it otherwise or it holds a line break (then JSON-quoted), lists and mappings
    # JSON, None/bools/numbers YAML's words.
    assert flatten(_Outer()) == {
        "name": '"yes"',  # plain yes is a bool in YAML 1.1
        "inner.k": "4",
        "inner.rate": "0.0001",
        "inner.stop": '["Q:", "end"]',
        "inner.path": "null",
        "inner.on": "false",
        "table.a": "1",
        "sets": '[{"name": "gsm", "path": "g.jsonl"}]',  # a list of mappings stays one value
        "template": '"Q: {p}\\nA:"',  # the line break as JSON's escape, not folded into a blank line
        "big": "1.0e+20",  # PyYAML writes a dot so it reads back as a float
    }
    assert set(flatten(_Outer(), prefix="cfg.")) == {f"cfg.{key}" for key in flatten(_Outer())}


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_flattened_params_read_back_as_the_same_config(name: str) -> None:
    # A run's params are the config: each reads back (YAML) to its value, and all of them given as overrides
    # to no file at all rebuild the same config.
    config = load_config(name, ["evaluate.extra_sets=[{name: gsm, path: /data/gsm.jsonl}]"])
    flat = flatten(config)
    leaves: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}{key}.", inner)
        else:
            leaves[prefix.removesuffix(".")] = value

    walk("", config.model_dump(mode="json"))
    assert set(flat) == set(leaves)
    assert {key: yaml.safe_load(text) for key, text in flat.items()} == leaves
    # One line each, however long (MLflow's UI and `search_runs` filters show and match the text as it is).
    assert not {key: text for key, text in flat.items() if "\n" in text}
    assert flat["generate.stop"] == '["\\n"]' and len(flat["judge.answer_pattern"]) > 80
    assert load_config(None, [f"{key}={text}" for key, text in flat.items()]) == config


def test_default_campaign_is_the_packaged_gemma(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main

    assert main(["validate"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["model"]["source"] == "packaged-gemma"
    assert resolved["prompts"]["validation_size"] >= 200  # the issue asks for at least 200 held-out problems
    assert resolved["prompts"]["test_size"] >= 200 and resolved["prompts"]["ood_size"] > 0


def test_few_shot_working_is_for_the_built_in_task() -> None:
    with pytest.raises(ConfigError, match="evaluate.few_shot_working rewrites the built-in task's examples"):
        load_config("word-problems", ["evaluate.few_shot_working=plain"])


def test_a_field_set_twice_is_named_with_its_values_and_the_last_is_taken() -> None:
    overrides = ["rounds=1", "prompts.heldout_size=50", "seed=2", "rounds=2", "prompts.validation_size=80"]
    assert repeated_overrides(overrides) == [
        "rounds is given 2 times (1, 2); the last one, 2, is taken",
        "prompts.validation_size is given 2 times (50, 80); the last one, 80, is taken",
    ]
    config = load_config("tiny", overrides)
    assert (config.rounds, config.prompts.validation_size) == (2, 80)
    assert repeated_overrides(["rounds=1", "seed=1"]) == []
