"""Loading a campaign config: YAML file + `key=value` overrides -> a validated `CampaignConfig`.

Every failure becomes a `ConfigError` whose lines name the field (dotted path), or the file with its
line and column, and the reason, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from configs.schema import OLD_NAMES, CampaignConfig

CONFIG_DIR = Path(__file__).resolve().parent
_DOTTED_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


MAX_CONFIG_BYTES = 2**20  # a config is a few kB; more is a wrong file (a data file, a device)


class ConfigError(ValueError):
    """A config that cannot be used; the message names each bad field and why."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (a key a merge, `<<: *anchor`,
    brings may be set again, as YAML means).

    PyYAML keeps the last value silently; a config with `k: 4` and, further down, `k: 64` would then
    run with a value the reader of the file may not see.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be set again below it
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConfigError(f"{self.name}, line {line}: duplicate key {key!r} (first at line {seen[key]})")
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_meant_int(self, node: yaml.ScalarNode) -> int:
        """YAML 1.1's int, except the two forms that read as another number than they show: a leading 0 is
        octal (`seed: 010` is 8) and colons are base 60 (`1:30` is 90). Hex, binary and `1_000` stay."""
        value = int(self.construct_yaml_int(node))
        digits = node.value.replace("_", "").lstrip("+-")  # the scalar as written
        if ":" in digits or (len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbB"):
            why = "base 60" if ":" in digits else "octal, for its leading 0"
            raise ConfigError(
                f"{self.name}, line {node.start_mark.line + 1}: {node.value!r} reads in YAML as the number {value} "
                f"({why}); write the number you mean, or quote it for text"
            )
        return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_meant_int)


def config_key_exists(key: str) -> bool:
    """Whether `key` is a dotted field path of the schema (`generate.k`, `judge.model.name`)."""
    parts = key.split(".")
    section = _section(parts[:-1])
    return section is not None and parts[-1] in section.model_fields


def _section(parts: Sequence[str]) -> type[BaseModel] | None:
    """The section model at a dotted path of sections (the whole config for []), or None."""
    model: type[BaseModel] = CampaignConfig
    for part in parts:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        sections = [a for a in (annotation, *get_args(annotation)) if _is_section(a)]
        if not sections:
            return None
        model = sections[0]
    return model


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """`[CONFIG] [key=value ...]` -> (config path or None, overrides).

    The first argument is an override only when the part before its first `=` is a field of the schema,
    so a config path that contains `=` (`configs/lr=1e-4.yaml`) is still a path.
    """
    if args and not is_override(args[0]):
        return args[0], list(args[1:])
    return None, list(args)


def is_override(arg: str) -> bool:
    """Whether a command-line argument is a `dotted.key=value` override of a known field."""
    key, sep, _ = arg.partition("=")
    return bool(sep) and config_key_exists(key.strip())


def resolve_config_path(name: str) -> Path:
    """A config path as given, or a bare name (`tiny`) looked up among the shipped configs."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    key, sep, _ = name.partition("=")
    if sep and _DOTTED_KEY.match(key.strip()):
        # Looks like an override of a field that does not exist: say that rather than "file not found".
        hint = _suggestion(key.strip().split("."))
        raise ConfigError(f"{name}: neither a config file nor an override of a known field{hint}")
    if not sep and "." in name and config_key_exists(name.strip()):
        raise ConfigError(f"{name}: config file not found; an override needs a value: {name.strip()}=VALUE")
    raise ConfigError(f"{name}: config file not found")


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds.

    Raises:
        ConfigError: naming the file (and the line and column, or the key) when it cannot be read as a
            YAML mapping: a directory, unreadable, not UTF-8, a syntax error, a duplicate key, a list, or
            nothing at all (empty or comments only: a file not saved yet or cut short would otherwise run
            every default).
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    try:
        with open(path, "rb") as file:  # bounded: /dev/zero or a huge file by mistake would never end
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, not a config file")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        loaded = loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_message(path, err)) from None
    finally:
        loader.dispose()
    if loaded is None:
        raise ConfigError(
            f"{path}: holds no fields (empty, or comments only); write {{}} in it to take every field's default"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields")
    return loaded


def _yaml_message(path: Path, err: yaml.YAMLError) -> str:
    """`file, line L, column C: problem (context)` from a PyYAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or _first_line(err)
    context = getattr(err, "context", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> CampaignConfig:
    """Read a YAML config (or the defaults when `path` is None), apply overrides and validate.

    Args:
        path: YAML file, or a shipped config name such as "tiny".
        overrides: `dotted.key=value` strings; values are parsed as YAML (`k=8`, `stop=["\\n"]`).

    Raises:
        ConfigError: unreadable file, malformed override, or a value the schema rejects.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(resolve_config_path(str(path)))
    return config_from_mapping(data, overrides)


def config_from_mapping(data: dict[str, Any], overrides: Sequence[str] = ()) -> CampaignConfig:
    """Apply `dotted.key=value` overrides to a config mapping (a copy; a deployment's defaults) and validate.

    Raises:
        ConfigError: a malformed override or a value the schema rejects.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        _apply_override(data, item)
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def _override_value(key: str, raw: str) -> Any:
    """An override's value read as YAML (`[a, b]`, `{k: v}`, `0.5`), a key given twice in one of its mappings
    refused as in a config file; text YAML cannot read stays the text itself."""
    if not raw.strip():
        return ""
    loader = _UniqueKeyLoader(raw)
    loader.name = f"override {key}"
    try:
        return loader.get_single_data()
    except ConfigError as err:
        raise ConfigError(str(err).replace(", line 1:", ":")) from None
    except yaml.YAMLError:
        return raw
    finally:
        loader.dispose()


def repeated_overrides(overrides: Sequence[str]) -> list[str]:
    """A line for each field set more than once among `overrides` (an old name counts as its new one): the
    values in order and that the last one is taken, as `config_from_mapping` does. Not an error: scripts append
    an override to a base list on purpose."""
    given: dict[str, list[str]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep and key.strip():
            given.setdefault(_field_name(key), []).append(raw)
    return [
        f"{key} is given {len(values)} times ({', '.join(values)}); the last one, {values[-1]}, is taken"
        for key, values in given.items()
        if len(values) > 1
    ]


def _field_name(key: str) -> str:
    """The field an override's key sets: an old name means its new one."""
    return OLD_NAMES.get(key.strip(), key.strip())


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        split = any(mark in item for mark in "]}") and not sep  # "prompts={train_size: 7}" unquoted: "7}" alone
        hint = " (a value with spaces must be quoted, as in 'prompts={train_size: 7}', or the shell splits it)"
        raise ConfigError(f"override {item!r}: expected dotted.key=value{hint if split else ''}")
    value = _override_value(key.strip(), raw)
    node = data
    # An override by an old name replaces the value the file gives under the new one.
    parts = _field_name(key).split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: an empty field name in {key.strip()!r}; expected dotted.key=value")
    if index := next((i for i, part in enumerate(parts) if i and part.isdigit()), 0):  # select.filters.0.kind
        whole = ".".join(parts[:index])
        raise ConfigError(f"override {item!r}: a list's item cannot be set alone; give the whole list: {whole}=[...]")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = _merged(node.get(parts[-1]), value)


def _merged(current: Any, value: Any) -> Any:
    """What an override's `value` makes of a field holding `current`: a mapping given for a section sets the
    fields it names, section into section (`prompts={train_size: 7}` is `prompts.train_size=7`), and the file's
    other fields stay; any other value replaces."""
    if not (isinstance(current, dict) and isinstance(value, dict)):
        return value
    return {**current, **{key: _merged(current.get(key), inner) for key, inner in value.items()}}


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `field.path: reason (got value)`, with a suggestion for typos."""
    lines = []
    for problem in err.errors():
        loc = [str(p) for p in problem["loc"]]
        where = ".".join(loc) or "config"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field{_suggestion(loc)}")
            continue
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "value_error" and (not loc or message.startswith(f"{where}.")):
            lines.append(message)  # a check across fields names its fields itself
            continue
        got = problem.get("input")
        shown = "" if isinstance(got, dict) or problem["type"] == "value_error" else f" (got {got!r})"
        if isinstance(got, dict) and problem["type"] == "string_type":  # `template=Q: {x}` unquoted
            shown = f" (got the mapping {str(got)[:80]}: YAML reads 'key: value' as one; quote the text)"
        lines.append(f"{where}: {message}{shown}")
    return "\n".join(lines)


def _suggestion(loc: Sequence[str]) -> str:
    model = _section(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def flatten(config: BaseModel, prefix: str = "") -> dict[str, str]:
    """The resolved config as `section.field -> value` strings (MLflow params)."""
    out: dict[str, str] = {}
    for name, value in config.model_dump(mode="json").items():
        _flatten_into(out, f"{prefix}{name}", value)
    return out


def _flatten_into(out: dict[str, str], key: str, value: Any) -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _flatten_into(out, f"{key}.{name}", inner)
    else:
        out[key] = param_text(value)


def param_text(value: Any) -> str:
    """A config value as one line that YAML reads back as the same value, so it pastes as an override.

    A string stays bare unless YAML would read it as something else, or it holds a line break, a tab or edge
    spaces: then it is JSON-quoted ("Question: {prompt}\\nAnswer:"), which YAML reads alike. Lists and
    mappings are JSON (["\\n"]); None, bools and numbers YAML's words (null, true, 1.0e+20). PyYAML's own
    quoting of a string would fold a line break into a blank line and wrap at 80 columns.
    """
    if isinstance(value, str):
        return value if _reads_back_bare(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return yaml.safe_dump(value).strip().removesuffix("...").strip()


def _reads_back_bare(text: str) -> bool:
    """Whether YAML reads `text`, unquoted and on one line, as this very string."""
    if not text or not text.isprintable() or text != text.strip():
        return False
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:  # "[x", "@x", "a: b: c": not a plain scalar
        return False


def describe_schema() -> str:
    """Every field with its type, default and description, for `selftrain schema`."""
    lines: list[str] = []
    _describe(CampaignConfig, "", lines)
    return "\n".join(lines)


def _describe(model: type[BaseModel], prefix: str, lines: list[str]) -> None:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{prefix}{name}:  # {field.description}")
            _describe(annotation, prefix + "  ", lines)
            continue
        default = "<required>" if field.is_required() else repr(field.get_default(call_default_factory=True))
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        lines.append(f"{prefix}{name}: {default}  # {type_name}. {field.description}")
        # An optional section or a list of items (judge.cascade, select.filters): its fields, commented out below.
        for nested in _nested_models(annotation):
            doc = nested.__doc__.strip().splitlines()[0] if nested.__doc__ else ""
            where = "each item" if get_origin(annotation) is list else "when set"
            lines.append(f"{prefix}  # {where}, {nested.__name__}: {doc}".rstrip())
            inner: list[str] = []
            _describe(nested, "", inner)
            lines.extend(f"{prefix}  #   {line}" for line in inner)


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The config models inside an optional, list or union annotation (`CascadeConfig | None`, `list[FilterConfig]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _nested_models(arg)]


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
