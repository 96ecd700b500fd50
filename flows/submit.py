"""`selftrain submit DEPLOYMENT [key=value ...] [--watch]`: start a served campaign with a few fields changed.

A deployment's one parameter is the whole config, so a raw `--param` would replace all of it. This reads
the deployment's default `config` from the Prefect server, applies the dotted overrides with the loader's
rules (`configs.loader.config_from_mapping`), validates, and only then creates the flow run: a bad
override is the usual one-line error and nothing is submitted. It prints the flow run's page in the UI
and, with `--watch`, follows the run to its final state (exit 0 when Completed, 1 otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from uuid import UUID

from configs.loader import ConfigError, config_from_mapping
from configs.schema import CampaignConfig
from flows.launch import FLOW_NAME, full_name, print_override_notes

POLL_SECONDS = 2.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare `selftrain submit DEPLOYMENT [key=value ...] [--watch]`."""
    parser.add_argument("deployment", help=f"deployment name, `NAME` or `{FLOW_NAME}/NAME`")
    # A default: argparse counts a `*` positional without one among "the following arguments are required".
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="key=value", help="dotted overrides of its default config"
    )
    parser.add_argument("--watch", action="store_true", help="follow the run to the end; exit 1 unless Completed")
    parser.add_argument(
        "--fresh", action="store_true", help="start a new campaign even if one with this config could be resumed"
    )


def submitted_config(deployment: str, overrides: list[str]) -> CampaignConfig:
    """The deployment's default config with `overrides` applied, validated.

    Raises:
        ValueError: no such deployment, or one without a `config` default.
        ConfigError: a malformed override or a value the schema rejects.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = full_name(deployment)
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ValueError(f"deployment {name}: not found on the Prefect server (`prefect deployment ls`)") from None
    defaults = (found.parameters or {}).get("config")
    if not isinstance(defaults, dict):
        raise ValueError(f"deployment {name}: has no default `config` parameter (not a selftrain deployment?)")
    return config_from_mapping(defaults, overrides)


def run_url(flow_run_id: UUID) -> str:
    """The flow run's page in the Prefect UI (PREFECT_UI_URL), or its id when no UI URL is known."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else f"flow run {flow_run_id}"


# How Prefect's flow engine begins a failed run's state message, before `<type>: <message>` (prefect.flow_engine).
FAILED_PREFIX = "Flow run encountered an exception:"


def watch(flow_run_id: UUID) -> str:
    """Print each state the flow run enters until a final one; return its type (`COMPLETED`, ...). A run that ends
    otherwise than Completed adds its reason on stderr as `selftrain run` gives one, `selftrain: error: <type>:
    <message>` (the exception Prefect recorded), or the state's message (a crash, a cancellation)."""
    from prefect.client.orchestration import get_client

    seen = None
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.name != seen:
                seen = state.name
                print(f"{time.strftime('%H:%M:%S')} {state.name}", flush=True)
            if state is not None and state.is_final():
                if state.is_cancelled():  # its message is Prefect's "Flow run was cancelled successfully."
                    print(f"selftrain: flow run {flow_run_id} was cancelled", file=sys.stderr, flush=True)
                elif not state.is_completed() and state.message:
                    reason = state.message.removeprefix(FAILED_PREFIX).strip()
                    print(f"selftrain: error: {reason}", file=sys.stderr, flush=True)
                return str(state.type.value)  # COMPLETED, FAILED, CRASHED, CANCELLED
            time.sleep(POLL_SECONDS)


def main(ns: argparse.Namespace) -> int:
    """Run `selftrain submit`: 2 with a one-line error before anything is submitted; with --watch, 0 when the
    run Completed and 1 otherwise."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    from flows.serve import server_problem

    problem = server_problem(PREFECT_API_URL.value())
    if problem is None:
        try:
            config = submitted_config(ns.deployment, ns.overrides)
        except (ConfigError, ValueError) as err:
            problem = str(err)
    if problem is not None:
        print(f"selftrain: error: {problem.replace('serve needs', 'submit needs')}", file=sys.stderr)
        return 2
    print_override_notes(ns.overrides)
    parameters = {"config": config.model_dump(mode="json"), "fresh": ns.fresh}
    flow_run = run_deployment(full_name(ns.deployment), parameters=parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)  # a coroutine only when called from async code
    print(f"submitted {config.name}: {run_url(flow_run.id)}")  # the run takes that name when it starts
    if not ns.watch:
        return 0
    return 0 if watch(flow_run.id) == "COMPLETED" else 1
