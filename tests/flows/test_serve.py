"""`selftrain serve` without the servers: its default parameters and its error when no Prefect server answers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from configs.loader import load_config
from flows.cli import main
from flows.serve import default_parameters, option_problem, server_problem


def test_default_parameters_are_the_config_with_an_absolute_output_dir() -> None:
    config = load_config("configs/tiny.yaml", ["rounds=2"])
    params = default_parameters(config)
    assert list(params) == ["config"]
    assert params["config"]["rounds"] == 2 and params["config"]["generate"]["k"] == config.generate.k
    assert params["config"]["tracking"]["output_dir"] == str(Path("runs").resolve())


def test_no_server_names_the_way_to_start_one() -> None:
    message = server_problem(None)
    assert "PREFECT_API_URL is not set" in message and "infra/start-stack.sh start" in message
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    message = server_problem(f"http://127.0.0.1:{port}/api")
    assert f"no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:{port}/api" in message
    assert "infra/start-stack.sh start" in message


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--cron", "bogus"], "--cron 'bogus': not a cron expression"),
        (["--name", "a/b"], "--name 'a/b': a deployment name is not empty and has none of / % & > <"),
        (["--limit", "0"], "--limit 0: must be at least 1"),
        (["--limit", "-1"], "--limit -1: must be at least 1"),
    ],
)
def test_bad_serve_options_are_one_line(capsys: pytest.CaptureFixture[str], option: list[str], expected: str) -> None:
    assert main(["serve", "configs/tiny.yaml", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"selftrain: error: {expected}") and err.count("\n") == 1, err
    assert option_problem("0 2 * * *", "nightly", 1) is None
