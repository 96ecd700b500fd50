"""`selftrain serve`: serve the campaign flow as a Prefect deployment whose parameter form is the typed config.

The deployment's parameters are `config: CampaignConfig` and `fresh`, so the Prefect UI renders every field of
the schema with its `Field(description=...)` text, and a run started from the UI or with
`prefect deployment run --params` is validated into a `CampaignConfig` before anything runs; a parameter the
flow does not take is refused by the server when the run is created. The loaded
CONFIG (with overrides) becomes the default parameters. Flow runs execute in subprocesses of this process
(Prefect's runner), which inherit the quiet defaults set here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from configs.schema import CampaignConfig
from flows.launch import full_name, load_checked, quiet_defaults

if TYPE_CHECKING:
    import psutil
    from prefect.utilities.callables import ParameterSchema

EXAMPLE_API_URL = "http://127.0.0.1:4200/api"
START_STACK_HINT = (
    "start one with `bash infra/start-stack.sh start` (PostgreSQL + Prefect + MLflow, see README "
    "'Running on servers') or `prefect server start`, then export PREFECT_API_URL=" + EXAMPLE_API_URL
)
DRAIN_SECONDS = 30.0  # how long a SIGTERM waits for flow runs in flight to record their end (Prefect's own grace)
PAUSE_TIMEOUT_SECONDS = 10  # per request when pausing the deployment on exit; a refused connection fails at once


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare `selftrain serve [CONFIG] [key=value ...] [--cron EXPR] [--name NAME] [--limit N]`."""
    parser.add_argument("args", nargs="*", help="config file or shipped name, then dotted key=value overrides")
    parser.add_argument("--cron", help="run on this cron schedule, e.g. '0 2 * * *' (nightly); default: no schedule")
    parser.add_argument("--name", help="deployment name (default: the campaign's name)")
    parser.add_argument("--limit", type=int, help="most flow runs executing at once (default: no limit)")


def default_parameters(config: CampaignConfig) -> dict:
    """The deployment's default parameters: the config as JSON, its output folder made absolute.

    Served runs execute in this process's working directory, but the UI shows the defaults to people
    who do not know which directory that is; an absolute path says where round data will go.
    """
    data = config.model_dump(mode="json")
    data["tracking"]["output_dir"] = str(Path(config.tracking.output_dir).resolve())
    return {"config": data}


def closed(schema: ParameterSchema) -> ParameterSchema:
    """`schema` with `additionalProperties: false`, so the Prefect server refuses a flow run whose parameters name
    one the flow does not take ("Additional properties are not allowed ('bogus' was unexpected)", when the run
    is created) rather than accepting it and letting the run crash in its process on Prefect's signature check
    with "Process exited with status code: 1". The config's own unknown fields are refused that way already
    (its models forbid extras, and their JSON schemas say so)."""
    from prefect.utilities.callables import ParameterSchema

    class Closed(ParameterSchema):
        additionalProperties: bool = False  # noqa: N815 (JSON Schema's spelling)

    # Set explicitly: the deployment sends only the fields that were set (`model_dump(exclude_unset=True)`).
    return Closed(**schema.model_dump(exclude_unset=True), additionalProperties=False)


def url_problem(api_url: str) -> str | None:
    """Why `api_url` (PREFECT_API_URL's value) is not an http(s) URL, or None; nothing is asked of the server."""
    try:
        parts = urllib.parse.urlsplit(api_url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as err:
        return f"PREFECT_API_URL={api_url}: not a URL ({err}); expected one like {EXAMPLE_API_URL}"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"PREFECT_API_URL={api_url}: not an http(s) URL of a Prefect API; expected one like {EXAMPLE_API_URL}"
    return None


def server_problem(api_url: str | None) -> str | None:
    """Why `serve` cannot use the Prefect API at `api_url`, or None when its health check answers."""
    if not api_url:
        return f"serve needs a Prefect server, and PREFECT_API_URL is not set: {START_STACK_HINT}"
    form = url_problem(api_url)
    if form:
        return form
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=10) as response:
            if response.status == 200:
                return None
            return f"the Prefect API at {api_url} answered HTTP {response.status}; {START_STACK_HINT}"
    except (urllib.error.URLError, OSError, ValueError) as err:  # ValueError: http.client's InvalidURL
        return f"no Prefect server answers at PREFECT_API_URL={api_url} ({err}); {START_STACK_HINT}"


def quiet_served_runs() -> None:
    """Make served flow runs print what `selftrain run` prints: progress lines, no bars, no FutureWarnings.

    Prefect's runner starts each flow run in a spawned subprocess, which inherits the environment but
    not this process's `warnings` filters or library settings, so everything is set as variables.
    """
    quiet_defaults()
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")


def serve(
    config: CampaignConfig, name: str | None = None, cron: str | None = None, limit: int | None = None
) -> str | None:
    """Register the campaign deployment with the Prefect server and execute its runs until interrupted (Ctrl-C or
    SIGTERM), then pause it; returns why pausing failed, or None.

    The deployment names its flow by module path (`flows.campaign:campaign_flow`), so each run starts a
    fresh `python -m prefect.engine` that imports the flow. `flow.serve` would instead hand the flow
    object to a spawned process through cloudpickle, which copies a decorated function by value with
    only the globals its body uses; the string annotations of `from __future__ import annotations`
    (`config: CampaignConfig`) then cannot be resolved and parameter validation fails.
    """
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import EntrypointType, RunnerDeployment

    from flows.campaign import campaign_flow

    quiet_served_runs()
    deployment = campaign_flow.to_deployment(
        name=name or config.name,
        cron=cron,
        parameters=default_parameters(config),
        description=f"selftrain campaign (defaults from the config {config.name!r}); every field is documented.",
        tags=["selftrain", config.name],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    # `to_deployment` dispatches on the caller: here, outside any event loop, it returns the deployment itself.
    assert isinstance(deployment, RunnerDeployment)
    deployment._parameter_openapi_schema = closed(deployment._parameter_openapi_schema)
    # Prefect's runner would pause the deployment on its way out (`pause_on_shutdown`) with its long-lived client,
    # which retries a refused connection for about 80 s once the server has gone: done below instead. SystemExit:
    # Prefect's SIGTERM handler (`Runner.handle_sigterm`) ends the runner with sys.exit(0). Until the runner
    # installs it (`Runner.start`, after the deployment is registered and announced), a SIGTERM would kill the
    # process with the deployment left unpaused: `_exit_on_sigterm` stands in for it till then.
    # A SIGTERM while the runner is inside an anyio task group (its event client connecting at start-up) raises the
    # handler's SystemExit in a child task: it ends the loop, and the runner's own task is left holding it wrapped
    # in a BaseExceptionGroup, which asyncio reports with a traceback at shutdown (`_QuietExit` drops that report;
    # `except*` takes the exit in either form).
    # Prefect's runner would then kill the flow runs in flight at once (SIGKILL), leaving them and their MLflow runs
    # RUNNING: `draining` first sends each a SIGTERM and waits for it to record its end (`DRAIN_SECONDS`).
    from prefect.runner.runner import Runner

    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    quiet = _QuietExit()
    logging.getLogger("asyncio").addFilter(quiet)
    handle_sigterm = Runner.handle_sigterm
    Runner.handle_sigterm = draining(handle_sigterm)  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            # Prefect's handler calls the runner's async stop() without awaiting it (3.8.8); sys.exit follows.
            warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
            prefect_serve(deployment, limit=limit, pause_on_shutdown=False)
    except* SystemExit:
        pass
    finally:
        Runner.handle_sigterm = handle_sigterm  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, previous)
        logging.getLogger("asyncio").removeFilter(quiet)
    return pause_deployment(full_name(deployment.name))


class _QuietExit(logging.Filter):
    """Drops asyncio's report of a task that ended in nothing but SystemExit (Prefect's SIGTERM handler's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BaseExceptionGroup):
            return error.split(SystemExit)[1] is not None  # keep it when anything else is in the group
        return not isinstance(error, SystemExit)


def flow_run_processes() -> list[psutil.Process]:
    """This process's children that execute flow runs (`python -m prefect.engine`, as Prefect's runner starts
    them)."""
    import psutil

    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "prefect.engine" in child.cmdline():
                found.append(child)
    return found


def ended(process: psutil.Process) -> bool:
    """Whether `process` has exited (a zombie too: the runner reaps its own children)."""
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def draining(handle_sigterm: Callable[..., None], seconds: float = DRAIN_SECONDS) -> Callable[..., None]:
    """Prefect's `Runner.handle_sigterm`, preceded by a drain of the flow runs in flight.

    The runner's own shutdown kills their processes with SIGKILL, so a campaign stopped with `selftrain serve`
    stayed RUNNING in Prefect and MLflow until its next submit. Here each gets a SIGTERM first, which a campaign
    takes as `selftrain run` takes one: it records its end (flow runs Crashed, "Execution was aborted by a termination
    signal"; MLflow runs KILLED with `selftrain.failure=interrupted`) and exits; the runner's handler then runs
    once all have, or `seconds` later. The event loop keeps running meanwhile (the runner streams their output),
    so the wait is a callback that looks again every half second. A second SIGTERM exits at once.
    """
    draining_since: list[float] = []

    def handler(runner: object, *args: object) -> None:
        import psutil

        children = [] if draining_since else flow_run_processes()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside the runner's loop: nothing to wait in
            children = []
        if not children:
            handle_sigterm(runner, *args)
            return
        draining_since.append(time.monotonic())
        for child in children:
            with contextlib.suppress(psutil.Error, OSError):  # gone meanwhile
                child.send_signal(signal.SIGTERM)
        print(
            f"selftrain: SIGTERM: stopping {len(children)} flow run(s) in flight (up to {seconds:.0f} s), then exiting",
            file=sys.stderr,
            flush=True,
        )

        def look() -> None:
            if all(ended(child) for child in children) or time.monotonic() - draining_since[0] > seconds:
                handle_sigterm(runner, *args)
            else:
                loop.call_later(0.5, look)

        loop.call_soon_threadsafe(look)  # threadsafe: wakes the loop from the select this signal interrupted

    return handler


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """What Prefect's runner does on SIGTERM once it runs (`sys.exit(0)`), for the moments before it does."""
    raise SystemExit(0)


def pause_deployment(name: str) -> str | None:
    """Pause the deployment `name` ("flow/deployment") as Prefect's runner does when serving stops, so no schedule
    makes runs that nothing executes; None when paused (or already deleted), else why it could not be.

    One request each, within PAUSE_TIMEOUT_SECONDS (Prefect's own client settings, for this client only): the
    runner's client retries a refused connection `PREFECT_CLIENT_MAX_RETRIES` (5) times after exponential
    back-off once it has connected (`PrefectHttpxAsyncClient.send`, prefect/client/base.py), which held a
    SIGTERM for 70-80 s when the Prefect server had stopped first, past a service manager's stop timeout.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    api_url = PREFECT_API_URL.value()
    bounded = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: PAUSE_TIMEOUT_SECONDS}
    try:
        with temporary_settings(updates=bounded), get_client(sync_client=True) as client:
            client.pause_deployment(client.read_deployment_by_name(name).id)
    except ObjectNotFound:
        return None  # deleted while served: nothing left to schedule
    except httpx.HTTPStatusError as err:
        reason = f"the Prefect API at {api_url} answered HTTP {err.response.status_code}"
    except httpx.TransportError as err:  # refused, timed out, reset
        reason = f"no Prefect server answers at PREFECT_API_URL={api_url} ({type(err).__name__}: {err})"
    else:
        print(f"selftrain: paused deployment {name}", file=sys.stderr)
        return None
    return f"could not pause deployment {name} on exit: {reason}; pause it in the Prefect UI once the server is back"


def option_problem(cron: str | None, name: str | None, limit: int | None) -> str | None:
    """Why `--cron`, `--name` or `--limit` cannot make a deployment, or None: checked before serving, so a bad one
    is one line, not Prefect's traceback (or, for a limit of 0, runs that never start)."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.types.names import BANNED_CHARACTERS

    if cron is not None:
        try:
            CronSchedule(cron=cron)
        except ValueError:
            return f"--cron {cron!r}: not a cron expression (five fields, e.g. '0 2 * * *': 02:00 every day)"
    if name is not None and (not name.strip() or any(c in name for c in BANNED_CHARACTERS)):
        return f"--name {name!r}: a deployment name is not empty and has none of {' '.join(BANNED_CHARACTERS)}"
    if limit is not None and limit < 1:
        return f"--limit {limit}: must be at least 1 (runs at once); leave it out for no limit"
    return None


def main(ns: argparse.Namespace) -> int:
    """Run `selftrain serve`: validate the config and the options, check the server, then serve (blocks until
    Ctrl-C or SIGTERM); 1 when the deployment could not be paused on exit."""
    config = load_checked(ns.args)
    if config is None:
        return 2
    from prefect.settings import PREFECT_API_URL  # the variable or the active Prefect profile

    problem = option_problem(ns.cron, ns.name, ns.limit) or server_problem(PREFECT_API_URL.value())
    if problem:
        print(f"selftrain: error: {problem}", file=sys.stderr)
        return 2
    problem = serve(config, name=ns.name, cron=ns.cron, limit=ns.limit)
    if problem:
        print(f"selftrain: error: {problem}", file=sys.stderr)
        return 1
    return 0
