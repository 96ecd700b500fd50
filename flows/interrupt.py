"""Stopping a campaign cleanly on Ctrl-C or SIGTERM: signals become one exception, the server outlives them.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group. Prefect starts its temporary
API server as a child in that group (`prefect.server.api.server.SubprocessASGIServer`), so the server
died first and the CLI then retried it for minutes while reporting the flow run's crash. Here the
server is started before the flow, from the main thread, in its own session: a terminal's SIGINT
reaches only the CLI, which records the interruption (MLflow runs KILLED, the Prefect flow run
Crashed) while the server still answers, and stops the server at exit (Prefect's own `atexit`).
`PR_SET_PDEATHSIG` makes the kernel stop the server if the CLI dies without clean-up (SIGKILL).

SIGTERM is handled like SIGINT. Inside a flow run Prefect swaps in its own SIGTERM handler, which
raises `prefect.exceptions.TerminationSignal` and, leaving the flow, re-sends SIGTERM to this process,
which then lands on the handler installed here.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from prefect.exceptions import TerminationSignal

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
REDELIVERY_SECONDS = 0.05  # after an interruption Python dropped (see `interruptible`)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; `signum` says which (exit status 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopError(ValueError):
    """An error whose message says all a user needs (what, where, what to do): `flows.launch.launch` prints it
    as one line, `selftrain: error: ...`, and exits 2, where another error shows its traceback (so does a
    `tasks.prompt_files.PromptFileError`, which a task cannot make a `StopError`: see `stop`)."""


def stop(error: BaseException) -> ValueError | None:
    """The stop behind `error`, if any: a `StopError`, or a `PromptFileError` (a prompt file moved away or broken
    once the run started, after preflight read it: its message names the file, the line and the reason, as it
    does when preflight refuses it), being `error` itself or the cause it was raised from."""
    from tasks.prompt_files import PromptFileError

    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        if isinstance(found, (StopError, PromptFileError)):
            return found
        seen.add(id(found))
        found = found.__cause__
    return None


RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # where Prefect's engines log a run's exception


class _StopWithoutTraceback(logging.Filter):
    """Keeps Prefect's line for a flow or task run ended by a stop (`stop`: "Encountered exception during
    execution: StartPolicyError(...)"), without the traceback it logs with it: the message says all a user needs,
    and the command prints it again as its last line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and stop(error) is not None:
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def stops_without_traceback() -> Iterator[None]:
    """Within: Prefect's run loggers log a stop's message without its traceback (`_StopWithoutTraceback`)."""
    quiet = _StopWithoutTraceback()
    for name in RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    finally:
        for name in RUN_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)


def interruption(error: BaseException | None) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind `error`, if any: `error` itself or one it was raised while handling.

    Prefect 3.8 can fail while recording a crash (a SIGTERM landing as a task run is created ends in
    `ValueError('Task run is not set')` raised during the `TerminationSignal`): still an interruption.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (KeyboardInterrupt, TerminationSignal)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def is_interruption(error: BaseException) -> bool:
    """Whether `error` comes from a user's Ctrl-C or a SIGTERM (as opposed to a failure of the campaign)."""
    return interruption(error) is not None


def failure_line(error: BaseException) -> str:
    """An error in one line (the `selftrain.failure` tag, the CLI's last line): its type and its message's first
    line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def raised_in_flow_run(error: BaseException) -> bool:
    """Whether `error` came out of a Prefect flow run, whose engine has logged its traceback already."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.endswith(os.path.join("prefect", "flow_engine.py")):
            return True
        frame = frame.tb_next
    return False


def signal_number(error: BaseException) -> int:
    """The signal behind an interruption: as received here, SIGTERM for Prefect's `TerminationSignal`,
    else SIGINT."""
    found = interruption(error)
    if isinstance(found, Interrupted):
        return found.signum
    if isinstance(found, TerminationSignal):
        return int(found.signal)
    return int(signal.SIGINT)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into `Interrupted` in the main thread; later ones are ignored,
    so a second Ctrl-C cannot cut short the recording of the first.

    Python runs a signal handler at whatever bytecode the main thread is at, and an exception raised where
    Python cannot propagate it (a garbage-collection weakref callback, a `__del__`) is printed and dropped
    ("Exception ignored in ..."): a Ctrl-C landing there was lost, and later ones were ignored, so the campaign
    ran to its end. Such an `Interrupted` (or Prefect's `TerminationSignal`) is caught by `sys.unraisablehook`
    and the signal is sent again `REDELIVERY_SECONDS` later, until one lands where it propagates.
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    previous_hook = sys.unraisablehook

    def hook(unraisable: UnraisableHookArgs) -> None:
        dropped = unraisable.exc_value
        if not isinstance(dropped, (Interrupted, TerminationSignal)):  # Prefect's SIGTERM handler, in a flow run
            previous_hook(unraisable)
            return
        received.clear()  # the next delivery raises again
        signum = dropped.signum if isinstance(dropped, Interrupted) else int(dropped.signal)
        timer = threading.Timer(REDELIVERY_SECONDS, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, old in previous.items():
            signal.signal(signum, old)


def _die_with_parent() -> None:  # runs in the forked child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _uvicorn_command(port: int) -> subprocess.Popen:
    """Prefect's temporary server on `port`, in a new session that gets SIGTERM when this process dies.

    The command and environment of `SubprocessASGIServer._run_uvicorn_command` (prefect 3.8.8); only the new
    session and the parent-death signal are added. From the main thread: the parent-death signal follows the
    thread that forks the server.
    """
    import prefect
    from prefect.settings import get_current_settings

    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory"]
    args += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--log-level", "error", "--lifespan", "on"]
    env = {**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)}
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509


def start_own_session_server() -> Callable[[], None]:
    """Launch Prefect's temporary API server now, in its own session (see the module docstring); return the
    call that waits until it answers.

    The server takes 4-6 s to start. Launched first, it starts while this process imports Prefect's server
    module and the flow (torch, transformers, MLflow: about 10 s), so `launch` waits only for what is left
    (benchmarks/startup.py). Does nothing (and the wait returns at once) when a server is configured
    (PREFECT_API_URL) or the temporary one already runs. Prefect finds the started server through
    `SubprocessASGIServer()`, which keeps one instance per port; its `start()` (the returned wait) registers
    the server's stop at exit, starts it again on another port if this one was taken meanwhile, and raises
    if it never answers.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():  # as prefect's get_client decides
        return lambda: None
    # The server's SQLite file is under PREFECT_HOME, which Prefect does not create: a PREFECT_HOME that does not
    # exist yet failed the start after minutes of retries ("unable to open database file").
    PREFECT_HOME.value().mkdir(parents=True, exist_ok=True)
    launched: subprocess.Popen | None = None
    port: int | None = None
    if "prefect.server.api.server" not in sys.modules:  # else a temporary server may run already
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        launched = _uvicorn_command(port)
    from prefect.server.api.server import SubprocessASGIServer  # 3-4 s of imports while the server starts

    class OwnSessionServer(SubprocessASGIServer):
        """Prefect's temporary server in a session of its own, taking over the one launched above."""

        def _run_uvicorn_command(self) -> subprocess.Popen:
            nonlocal launched
            if launched is not None and self.port == port:
                process, launched = launched, None
                return process
            if self.port is None:  # `start()` picks a port before it launches
                raise RuntimeError("Prefect's temporary server has no port")
            return _uvicorn_command(self.port)

    if SubprocessASGIServer._instances.get(None) is None:
        OwnSessionServer().port = port  # the instance every later `SubprocessASGIServer()` returns
    server = SubprocessASGIServer()
    return server.start


def stop_temporary_server(*, kill: bool = False) -> None:
    """Drain Prefect's log and event workers (while the temporary server, if one runs, still answers), then stop
    that server: killed with `kill`, else by Prefect's own stop, which logs "Stopping temporary server".

    At exit Prefect stops the server itself (atexit), after whatever the command printed last; a command that
    ends with one line of its own stops it first, so that line is the last.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=3)
    server_module = sys.modules.get("prefect.server.api.server")  # not imported: no temporary server runs
    server = server_module.SubprocessASGIServer._instances.get(None) if server_module is not None else None
    if server is None or server.server_process is None:
        return
    if not kill:
        server.stop()
        return
    server.server_process.kill()
    server.server_process.wait()
    server.server_process = None


def exit_now(status: int) -> NoReturn:
    """Leave the process after an interruption, quickly and with everything recorded.

    Prefect's log and event workers are drained first, while the temporary server still answers: at exit
    Prefect stops the server before `logging.shutdown` drains them, which then waits out a 5 s timeout.
    Then the server is stopped, the exit handlers run, and the interpreter is left without its teardown: with torch,
    transformers, Prefect and MLflow loaded, the final garbage collection of every module took 11 s on a
    loaded 2-core machine. The campaign's own writes are synchronous, so nothing is pending by then.
    """
    # Every state the CLI wrote is acknowledged and SQLite commits are atomic, so the server is killed: its
    # graceful stop (Prefect's atexit) printed a CancelledError traceback from a pooled connection.
    stop_temporary_server(kill=True)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
