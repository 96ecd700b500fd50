"""Ctrl-C and SIGTERM stop a campaign within seconds with one line saying how to resume; the resume
gets the same accuracies as an uninterrupted run, and a speed-only change (`model.torch_threads`) resumes."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.interrupt import Interrupted, interruptible, is_interruption, signal_number
from tests.cli import REPO, SELFTRAIN, run_cli

# Test and OOD sets of 32 and 16 (tiny.yaml: 128 and 64): the resume is compared on validation accuracy, and
# where each signal lands (round 1's generation or training) does not depend on them.
SMALL = [
    "configs/tiny.yaml",
    "rounds=2",
    "prompts.train_size=64",
    "prompts.validation_size=64",
    "prompts.test_size=32",
    "prompts.ood_size=16",
]
EXIT_WITHIN = 10.0  # seconds from the signal to the process's exit


def test_signals_become_one_interruption_and_later_ones_are_ignored() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises in the main thread at the next bytecode
    assert caught.value.signum == signal.SIGTERM and signal_number(caught.value) == 143 - 128
    with interruptible():
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while the first is being recorded: no effect
        time.sleep(0.2)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored


def test_an_interruption_python_drops_in_a_weakref_callback_is_delivered_again() -> None:
    # Seen in a Ctrl-C test: the handler raised inside a garbage-collection callback, Python printed
    # "Exception ignored" and dropped it, every later Ctrl-C was ignored, and the campaign ran to its end.
    class Thing:
        pass

    def callback(ref: weakref.ref) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler raises here, where Python cannot propagate it

    thing = Thing()
    ref = weakref.ref(thing, callback)
    hook, started = sys.unraisablehook, time.monotonic()
    with pytest.raises(Interrupted), interruptible():
        del thing  # the callback runs now; its Interrupted is dropped
        time.sleep(5)  # delivered again here
    assert time.monotonic() - started < 3 and ref() is None
    assert sys.unraisablehook is hook  # put back


def test_errors_raised_while_handling_an_interruption_count_as_one() -> None:
    try:
        try:
            raise Interrupted(signal.SIGTERM)
        except Interrupted:
            raise ValueError("Task run is not set")  # noqa: B904 (as Prefect 3.8 raises it while recording a crash)
    except ValueError as error:
        assert is_interruption(error) and signal_number(error) == signal.SIGTERM
    assert not is_interruption(ValueError("a real failure"))


def _start(args: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen:
    # Own session, as a terminal's foreground group: the signal goes to the group, as Ctrl-C does.
    return subprocess.Popen(
        [SELFTRAIN, "run", *args],
        cwd=REPO,
        env=env,
        stdout=open(out / "stdout.txt", "w"),  # noqa: SIM115 (closed with the process)
        stderr=open(out / "stderr.txt", "w"),  # noqa: SIM115
        start_new_session=True,
    )


def _interrupt_when(proc: subprocess.Popen, out: Path, line: str, signum: int) -> float:
    """Send `signum` to the process group once `line` shows in its output; return seconds to exit."""
    deadline = time.monotonic() + 900
    while line not in (out / "stderr.txt").read_text() + (out / "stdout.txt").read_text():
        assert proc.poll() is None, (out / "stderr.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, f"{line!r} never showed"
        time.sleep(0.05)
    os.killpg(proc.pid, signum)
    sent = time.monotonic()
    proc.wait(timeout=120)
    return time.monotonic() - sent


def _runs(output_dir: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-tiny")
    return client, client.search_runs([experiment.experiment_id])


def _accuracies(output_dir: Path) -> dict[int, float]:
    client, runs = _runs(output_dir)
    (parent,) = [r for r in runs if r.data.tags.get("selftrain.kind") == "campaign"]
    history = client.get_metric_history(parent.info.run_id, "val/accuracy")
    assert len({m.step for m in history}) == len(history), "two points at one round"
    return {m.step: m.value for m in history}


def _assert_interrupted(proc: subprocess.Popen, seconds: float, out: Path, args: list[str], status: int) -> None:
    stdout, stderr = (out / "stdout.txt").read_text(), (out / "stderr.txt").read_text()
    print(f"exit {proc.returncode} after {seconds:.2f} s")
    assert proc.returncode == status, stderr[-3000:]
    assert seconds < EXIT_WITHIN
    lines = [line for line in stderr.splitlines() if line.startswith("selftrain:")]
    assert lines == [f"selftrain: interrupted; resume with: {shlex.join(['selftrain', 'run', *args])}"]
    assert "Traceback" not in stdout + stderr and "ConnectError" not in stdout + stderr
    client, runs = _runs(Path(args[-1].split("=", 1)[1]))
    assert runs and {r.info.status for r in runs} == {"KILLED"}  # the campaign and its open round
    assert {r.data.tags.get("selftrain.failure") for r in runs} == {"interrupted"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> dict[int, float]:
    """Per-round accuracies of the same small campaign run without a stop."""
    runs = tmp_path_factory.mktemp("uninterrupted") / "runs"
    run_cli(["run", *SMALL, f"tracking.output_dir={runs}"], cli_env)
    return _accuracies(runs)


@pytest.mark.slow
def test_sigterm_then_ctrl_c_exit_within_seconds_and_resume_to_the_same_accuracies(
    tmp_path: Path, cli_env: dict[str, str], uninterrupted: dict[int, float]
) -> None:
    """One campaign stopped twice: by SIGTERM in round 1's generation, started on 2 threads; then, resumed on 1 (the
    default), by Ctrl-C in round 1's training; the second resume ends with the uninterrupted run's accuracies.
    model.torch_threads says only how fast, so the campaign resumes though its runs recorded 2."""
    args = [*SMALL, f"tracking.output_dir={tmp_path / 'runs'}"]
    started = [*SMALL, "model.torch_threads=2", args[-1]]
    first, second = tmp_path / "sigterm", tmp_path / "ctrl-c"
    first.mkdir()
    second.mkdir()

    proc = _start(started, first, cli_env)
    # The line the step prints as its sampling starts: a later one ("generate: 256/256") can come at its end, on a
    # fast machine the only one, and the signal then lands between tasks, in Prefect's code rather than the step's.
    seconds = _interrupt_when(proc, first, "generate: starting", signal.SIGTERM)
    _assert_interrupted(proc, seconds, first, started, 143)

    proc = _start(args, second, cli_env)
    seconds = _interrupt_when(proc, second, "train: starting", signal.SIGINT)  # before any step ends
    _assert_interrupted(proc, seconds, second, args, 130)
    assert "resuming campaign" in (second / "stderr.txt").read_text()
    assert not [p for p in (tmp_path / "runs").glob("*/round-01/adapter")]  # stopped inside round 1's training

    resumed = run_cli(["run", *args], cli_env)
    assert "resuming campaign" in resumed.stderr
    assert _accuracies(tmp_path / "runs") == uninterrupted
    client, runs = _runs(tmp_path / "runs")
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 3
    assert not [r for r in runs if "selftrain.failure" in r.data.tags]  # stale tags cleared on success
    for run in runs:
        assert "model.torch_threads" not in run.data.params
        assert run.data.tags["selftrain.config.model.torch_threads"] == "1"
        for key in run.data.metrics:  # a stage run three times keeps one point per round
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), (run.info.run_name, key, steps)


def test_a_prompt_file_error_is_a_stop_itself_or_as_the_cause_of_another() -> None:
    from flows.interrupt import StopError, stop
    from tasks.prompt_files import PromptFileError

    moved = PromptFileError("data/train.jsonl", "file not found")
    assert stop(moved) is moved
    try:
        try:
            raise moved
        except PromptFileError as error:
            raise RuntimeError("a wrapper") from error
    except RuntimeError as wrapped:
        assert stop(wrapped) is moved  # raised from it: its message is the one to print
    try:
        try:
            raise moved
        except PromptFileError:
            raise KeyError("a failure while handling it") from None  # noqa: B904 (what is tested)
    except KeyError as other:
        assert stop(other) is None  # another failure, not a stop
    assert stop(ValueError("no rows")) is None
    files = StopError("round 1 finished before the resume, but ...")
    assert stop(files) is files
