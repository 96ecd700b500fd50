"""A command that fails ends with one line naming the error, exit status 1: Prefect's log of a flow run holds the
traceback once (Python no longer prints it again); a failure outside any flow run keeps its traceback. That line
is the last: Prefect's "Stopping temporary server" comes before it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import REPO

SCRIPT = """
from prefect import flow, task
from flows.launch import launch, quiet_defaults

quiet_defaults()


@flow(name="fails")
def fails() -> None:
    raise ValueError("no rows left\\nsecond line")


def outside() -> None:
    raise KeyError("setting")


@task
def read_prompts() -> None:
    from tasks.prompt_files import PromptFileError

    raise PromptFileError("data/train.jsonl", "file not found")


@flow(name="file-moved")
def file_moved() -> None:
    read_prompts()


launch({"flow": fails, "outside": outside, "prompt-file": file_moved}[sys.argv[1]])
"""


def _run(where: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import sys\n" + SCRIPT
    return subprocess.run(
        [sys.executable, "-c", code, where], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _ours(proc: subprocess.CompletedProcess) -> list[str]:
    """The command's own lines, checked to end stderr: Prefect's temporary server is stopped before them."""
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("selftrain:"), lines[-3:]
    return [line for line in lines if line.startswith("selftrain:")]


def test_a_flow_run_that_fails_ends_with_one_line_after_prefects_traceback(cli_env: dict[str, str]) -> None:
    proc = _run("flow", cli_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback (most recent call last)") == 1  # Prefect's log of the flow run
    assert "Encountered exception during execution" in proc.stderr
    assert _ours(proc) == ["selftrain: error: ValueError: no rows left"]


def test_a_failure_outside_a_flow_run_keeps_its_traceback(cli_env: dict[str, str]) -> None:
    proc = _run("outside", cli_env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback (most recent call last)") == 1
    assert _ours(proc) == ["selftrain: error: KeyError: 'setting'"]


def test_printed_commands_name_the_venvs_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # "See it in MLflow: mlflow ui ..." failed as printed where the venv is not activated (the README's set-up).
    from flows.launch import venv_tool

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "mlflow").touch()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    assert venv_tool("mlflow") == ".venv/bin/mlflow"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert venv_tool("mlflow") == str(bin_dir / "mlflow")  # outside the working directory: the absolute path
    assert venv_tool("nosuch") == "nosuch"


def test_a_prompt_file_gone_once_the_run_started_is_a_stop_exit_2_without_its_type(cli_env: dict[str, str]) -> None:
    # A prompt file moved or broken mid-campaign (after preflight read it), raised in a task of the flow run: the
    # message names the file and the reason, so it ends as a bad input does before the run (README).
    proc = _run("prompt-file", cli_env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert _ours(proc) == ["selftrain: error: data/train.jsonl: file not found"]
    # Prefect's log of the task and flow runs keeps its lines with the message, without a traceback to read past.
    assert "Traceback" not in proc.stderr and "Encountered exception during execution: PromptFileError(" in proc.stderr


def test_a_campaign_without_a_test_set_says_why_it_makes_no_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from configs.loader import load_config
    from flows.launch import print_campaign

    config = load_config("tiny", [f"tracking.output_dir={tmp_path}"])
    rows = [{"round": 0, "promoted": True, "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6}]
    print_campaign(config, {"rounds": rows, "claim": None, "parent_run_id": "r", "workdir": str(tmp_path)})
    out = capsys.readouterr().out
    assert (
        "no claim: the campaign has no test set (set prompts.test_path to score the start and the final policy)" in out
    )
