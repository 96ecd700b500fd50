"""infra/compose.yaml is safe by default: loopback ports, required secrets without defaults, auth on both servers.

No container engine runs here, so the file is read as compose reads it: YAML, then `${VAR}` interpolation
(`:-` default, `:?` required) against an environment. The setting names are checked against the pinned
Prefect and MLflow, which is where a misspelt one would otherwise fail silently (auth simply off).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
SECRETS = {"SELFTRAIN_DB_PASSWORD", "PREFECT_AUTH_STRING", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY"}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|AUTH_STRING|TOKEN", re.IGNORECASE)


class Unset(LookupError):
    """A `${VAR:?message}` whose variable is unset or empty: compose stops with the message."""


def interpolate(value: object, env: dict[str, str]) -> object:
    """`value` with every `${...}` replaced as compose does (nested lists and mappings too)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        present = env.get(name, "") != "" if op and op.startswith(":") else name in env
        if op in (":?", "?") and not present:
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and not present:
            return arg
        return env.get(name, "")

    return REFERENCE.sub(substitute, value)


def _mlflow_auth_config_module() -> ModuleType:
    """mlflow/server/auth/config.py alone: the auth package itself needs Flask-WTF, installed in the image only."""
    package = importlib.util.find_spec("mlflow.server.auth")
    spec = importlib.util.spec_from_file_location(
        "mlflow_auth_config", Path(package.submodule_search_locations[0]) / "config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_env() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def test_every_published_port_is_bound_to_loopback_by_default(compose: dict) -> None:
    published = [(name, port) for name, svc in compose["services"].items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"prefect-server", "mlflow"}  # PostgreSQL is never published
    for name, port in published:
        assert isinstance(port, str), f"{name}: long port syntax; keep host_ip explicit"
        resolved = interpolate(port, {})
        host_ip = resolved.rsplit(":", 2)[0] if resolved.count(":") == 2 else None
        assert host_ip is not None, f"{name}: {port} publishes on every interface"
        assert ipaddress.ip_address(host_ip).is_loopback, f"{name}: {port} -> {host_ip}"
        assert port.startswith(("127.0.0.1:", "${BIND_ADDRESS:-127.0.0.1}:")), port
        assert interpolate(port, {"BIND_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:")  # opt-in only


def test_compose_refuses_to_start_without_each_secret(compose: dict) -> None:
    env = example_env()
    interpolate(compose, env)  # the template's values are enough to start
    for secret in SECRETS:
        for missing in ({k: v for k, v in env.items() if k != secret}, {**env, secret: ""}):
            with pytest.raises(Unset, match=rf"^{secret}: set {secret}"):
                interpolate(compose, missing)


def test_no_literal_password_and_no_default_for_a_secret(compose: dict) -> None:
    text = (INFRA / "compose.yaml").read_text()
    for name, op, _ in REFERENCE.findall(text):
        if name in SECRETS:
            assert op == ":?", f"${{{name}}} must be required (:?), never defaulted"
    for service, svc in compose["services"].items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if SECRET_KEY.search(key):
                assert REFERENCE.fullmatch(str(value)), f"{service}.{key} is a literal: {value!r}"
        for line in [*env.values(), *(svc.get("command") or [])]:
            for user_password in re.findall(r"://([^/@\s]+)@", str(line)):  # credentials inside a URL
                assert REFERENCE.search(user_password.split(":", 1)[1]), f"{service}: literal password in {line}"
    assert "POSTGRES_HOST_AUTH_METHOD" not in text  # `trust` would turn the password off


def test_prefect_and_mlflow_auth_are_on_with_names_the_pinned_libraries_read(compose: dict, tmp_path: Path) -> None:
    from mlflow import environment_variables as mlflow_env
    from prefect import settings as prefect_settings

    services = interpolate(compose["services"], example_env())
    server, mlflow, worker = services["prefect-server"], services["mlflow"], services["worker"]
    assert hasattr(prefect_settings, "PREFECT_SERVER_API_AUTH_STRING")
    assert hasattr(prefect_settings, "PREFECT_API_AUTH_STRING")
    auth = example_env()["PREFECT_AUTH_STRING"]
    assert server["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == worker["environment"]["PREFECT_API_AUTH_STRING"]
    assert server["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == auth and ":" in auth  # user:password

    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = mlflow["environment"]
    for name in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert getattr(mlflow_env, name).name == name and env[name]
    assert mlflow_env.MLFLOW_FLASK_SERVER_SECRET_KEY.name in env  # the auth app refuses to start without it
    assert len(env["MLFLOW_AUTH_ADMIN_PASSWORD"]) >= 12  # MLflow's minimum for the bootstrap admin
    assert worker["environment"]["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert worker["environment"]["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]

    # The ini compose mounts, as MLflow reads it: users on the mlflow-auth volume, admin from the environment.
    (mounted,) = [c for c in mlflow["configs"] if c["target"] == env["MLFLOW_AUTH_CONFIG_PATH"]]
    ini = tmp_path / "auth.ini"
    ini.write_text(compose["configs"][mounted["source"]]["content"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
        patch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", env["MLFLOW_AUTH_ADMIN_USERNAME"])
        patch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", env["MLFLOW_AUTH_ADMIN_PASSWORD"])
        config = _mlflow_auth_config_module().read_auth_config()
    assert config.admin_password == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert config.database_uri.startswith("sqlite:////mlflow-auth/")
    assert any(v.startswith("mlflow-auth:/mlflow-auth") for v in mlflow["volumes"])


def test_the_secrets_file_stays_out_of_git_and_the_image() -> None:
    root = INFRA.parent
    assert "infra/.env" in (root / ".gitignore").read_text().splitlines()
    assert "infra/.env" in (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert set(example_env()) >= SECRETS | {"BIND_ADDRESS"}
