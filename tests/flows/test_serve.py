"""`selftrain serve` without the servers: its default parameters and its error when no Prefect server answers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from configs.loader import load_config
from flows.cli import main
from flows.serve import closed, default_parameters, option_problem, server_problem
from tests.cli import free_port, run_cli


def test_default_parameters_are_the_config_with_an_absolute_output_dir() -> None:
    config = load_config("configs/tiny.yaml", ["rounds=2"])
    params = default_parameters(config)
    assert list(params) == ["config"]
    assert params["config"]["rounds"] == 2 and params["config"]["generate"]["k"] == config.generate.k
    assert params["config"]["tracking"]["output_dir"] == str(Path("runs").resolve())


def test_the_deployments_parameters_are_described_in_its_schema() -> None:
    # What Prefect's UI shows above each parameter's form: the flow docstring's Args.
    from prefect.utilities.callables import parameter_schema

    from flows.campaign import campaign_flow

    properties = parameter_schema(campaign_flow.fn).model_dump()["properties"]
    assert set(properties) == {"config", "fresh"}
    assert properties["config"]["description"].startswith("The campaign, every field with its meaning")
    assert properties["fresh"]["description"].startswith("Start a new campaign even when an unfinished one")


def test_the_served_schema_refuses_a_parameter_the_flow_does_not_take() -> None:
    # The check the Prefect server runs when a flow run is created (`enforce_parameter_schema`, on by default):
    # without `additionalProperties: false` it let {"bogus": 1} through, and the run crashed in its process.
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    from flows.campaign import campaign_flow

    schema = closed(parameter_schema(campaign_flow.fn)).model_dump(exclude_unset=True)  # what the deployment sends
    params = default_parameters(load_config("configs/tiny.yaml"))
    assert validate({**params, "fresh": True}, schema) == []
    with pytest.raises(ValidationError, match=r"Additional properties are not allowed \('bogus' was unexpected\)"):
        validate({**params, "bogus": 1}, schema, raise_on_error=True)
    open_schema = parameter_schema(campaign_flow.fn).model_dump(exclude_unset=True)
    assert validate({**params, "bogus": 1}, open_schema) == []  # Prefect's own schema, for contrast


def test_a_sigterm_before_prefects_runner_listens_still_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between registering the deployment and installing its own SIGTERM handler (`Runner.start`), Prefect's serve
    # would die of a SIGTERM with the deployment left unpaused; serve's stand-in ends it as Prefect's handler does.
    import prefect

    import flows.serve

    def serve_then_sigterm(*_args: object, **_kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
        time.sleep(5)
        raise AssertionError("SIGTERM did not end serving")

    paused: list[str] = []
    monkeypatch.setattr(prefect, "serve", serve_then_sigterm)
    monkeypatch.setattr(flows.serve, "pause_deployment", lambda name: paused.append(name))
    monkeypatch.setattr(flows.serve, "quiet_served_runs", lambda: None)  # process-wide settings, not under test
    before = signal.getsignal(signal.SIGTERM)
    assert flows.serve.serve(load_config("configs/tiny.yaml"), name="early") is None
    assert paused == ["selftrain-campaign/early"]
    assert signal.getsignal(signal.SIGTERM) is before  # restored


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_sigterm_inside_a_task_group_still_pauses(monkeypatch: pytest.MonkeyPatch, wrapped: bool) -> None:
    # Prefect's SIGTERM handler raises SystemExit wherever the runner is; inside an anyio task group (its event
    # client connecting at start-up) it comes out wrapped in a BaseExceptionGroup (CI of 408f1f3 printed one).
    import prefect

    import flows.serve

    def serve_then_exit(*_args: object, **_kwargs: object) -> None:
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", [SystemExit(0)]) if wrapped else SystemExit(0)

    paused: list[str] = []
    monkeypatch.setattr(prefect, "serve", serve_then_exit)
    monkeypatch.setattr(flows.serve, "pause_deployment", lambda name: paused.append(name))
    monkeypatch.setattr(flows.serve, "quiet_served_runs", lambda: None)
    assert flows.serve.serve(load_config("configs/tiny.yaml"), name="grouped") is None
    assert paused == ["selftrain-campaign/grouped"]


def test_asyncios_report_of_the_sigterm_exit_is_dropped_and_others_kept() -> None:
    import logging

    from flows.serve import _QuietExit

    def report(error: BaseException) -> logging.LogRecord:  # as asyncio's default exception handler logs it
        message = "unhandled exception during asyncio.run() shutdown"
        return logging.LogRecord("asyncio", logging.ERROR, "", 0, message, None, (type(error), error, None))

    quiet = _QuietExit()
    assert not quiet.filter(report(BaseExceptionGroup("unhandled errors in a TaskGroup", [SystemExit(0)])))
    assert not quiet.filter(report(SystemExit(0)))
    assert quiet.filter(report(BaseExceptionGroup("g", [SystemExit(0), RuntimeError("x")])))
    assert quiet.filter(report(RuntimeError("x")))
    assert quiet.filter(logging.LogRecord("asyncio", logging.WARNING, "", 0, "slow callback", None, None))


def test_another_error_from_serving_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect

    import flows.serve

    def serve_then_fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(prefect, "serve", serve_then_fail)
    monkeypatch.setattr(flows.serve, "pause_deployment", lambda name: None)
    monkeypatch.setattr(flows.serve, "quiet_served_runs", lambda: None)
    with pytest.raises(RuntimeError, match="boom"):
        flows.serve.serve(load_config("configs/tiny.yaml"), name="failing")


def test_no_server_names_the_way_to_start_one() -> None:
    message = server_problem(None)
    assert "PREFECT_API_URL is not set" in message and "infra/start-stack.sh start" in message
    port = free_port()  # a loopback port nothing listens on
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


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "PREFECT_API_URL=notaurl: not an http(s) URL of a Prefect API; expected one like http://"),
        ("http://", "PREFECT_API_URL=http://: not an http(s) URL of a Prefect API"),
        ("ftp://host/api", "PREFECT_API_URL=ftp://host/api: not an http(s) URL of a Prefect API"),
        ("http://host:port/api", "PREFECT_API_URL=http://host:port/api: not a URL (Port could not be cast"),
    ],
)
def test_a_prefect_api_url_that_is_no_url_is_named(url: str, expected: str) -> None:
    # Checked before any request: urllib's "unknown url type" was a traceback of `selftrain run` and `submit`.
    message = server_problem(url)
    assert message is not None and message.startswith(expected) and "\n" not in message, message


def test_run_and_submit_name_a_bad_prefect_api_url_in_one_line(tmp_path: Path) -> None:
    # The installed command, as a user runs it: Prefect reads PREFECT_API_URL once, at its import.
    env = {**os.environ, "PREFECT_API_URL": "notaurl"}
    runs = tmp_path / "runs"
    for argv in (["run", "configs/tiny.yaml", f"tracking.output_dir={runs}"], ["submit", "x"]):
        proc = run_cli(argv, env, timeout=120, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("selftrain: error: PREFECT_API_URL=notaurl: not an http(s) URL")
        assert proc.stderr.count("\n") == 1, proc.stderr
    assert not runs.exists()


def test_serve_and_submit_name_a_deployment_alike() -> None:
    from flows.campaign import campaign_flow
    from flows.launch import full_name

    assert full_name("nightly") == f"{campaign_flow.name}/nightly"  # what serve registers and pauses
    assert full_name("other-flow/nightly") == "other-flow/nightly"
