"""Loading a campaign config: YAML file + `key=value` overrides -> a validated `CampaignConfig`.

Every failure becomes a `ConfigError` whose lines name the field (dotted path) and the reason, so
the CLI can print it without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from configs.schema import CampaignConfig

CONFIG_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A config that cannot be used; the message names each bad field and why."""


def resolve_config_path(name: str) -> Path:
    """A config path as given, or a bare name (`tiny`) looked up among the shipped configs."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"{name}: config file not found")


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
        resolved = resolve_config_path(str(path))
        try:
            loaded = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{resolved}: not valid YAML ({_first_line(err)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of fields")
        data = loaded or {}
    for item in overrides:
        _apply_override(data, item)
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


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
        got = problem.get("input")
        shown = "" if isinstance(got, dict) or problem["type"] == "value_error" else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}")
    return "\n".join(lines)


def _suggestion(loc: list[str]) -> str:
    model: type[BaseModel] = CampaignConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
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
        out[key] = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


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
        default = field.get_default(call_default_factory=True)
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        lines.append(f"{prefix}{name}: {default!r}  # {type_name}. {field.description}")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
