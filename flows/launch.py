"""How a `selftrain` subcommand starts: quiet defaults, the checked config, and a flow run that stops cleanly.

The subcommand modules (`flows/serve.py`, `flows/reproduce.py`, `flows/ablation.py`, `flows/judge_eval.py`,
`flows/score.py`) and the CLI share these helpers; nothing here imports the CLI, so the CLI imports its
subcommands and they never import it back.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from configs.loader import ConfigError, load_config, repeated_overrides, split_args
from configs.schema import CampaignConfig

DEFAULT_CONFIG = "default"  # configs/default.yaml: the packaged Gemma 3 270M campaign
FLOW_NAME = "selftrain-campaign"  # flows.campaign.campaign_flow's name; a bare deployment name gets it

T = TypeVar("T")


def full_name(deployment: str) -> str:
    """`flow/deployment` as Prefect names it (what `serve` registers and pauses, what `submit` runs): a bare name is
    a deployment of the campaign flow."""
    return deployment if "/" in deployment else f"{FLOW_NAME}/{deployment}"


def quiet_defaults() -> None:
    """Environment defaults for a quiet, offline-friendly run; call before anything imports Prefect, which
    reads its settings from the environment once."""
    # Offline machines: Prefect's telemetry otherwise logs connection errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server's 20 s start-up limit is too short on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # MLflow draws a progress bar for every artifact download (registering a champion downloads its files).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Deprecation notices from transformers/TRL internals say nothing a selftrain user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)


def quiet_progress_bars() -> None:
    """No progress bars from transformers or datasets (TRL's dataset preparation): the campaign logs its own
    progress lines. The datasets variable is read at its import, which may already have happened."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def checked_config(args: Sequence[str], default: str = DEFAULT_CONFIG) -> CampaignConfig:
    """The config `[CONFIG] [key=value ...]` names (`default` without CONFIG), checked by `preflight`.

    Raises:
        ConfigError, ValueError or OSError naming the field, file or line and the reason.
    """
    from flows.preflight import preflight

    path, overrides = split_args(args)
    config = load_config(path or default, overrides)
    preflight(config)
    return config


def load_checked(args: Sequence[str], default: str = DEFAULT_CONFIG) -> CampaignConfig | None:
    """`checked_config`, or None after printing its error (`selftrain: error: ...`, one line) to stderr; a field
    set twice on the command line gets a note there (`repeated_overrides`), and so does a model not on disk yet,
    whose files the campaign checks once it has them (`flows.preflight.check_prepared_model`)."""
    from flows.preflight import model_named, model_on_disk

    try:
        config = checked_config(args, default)
    except (ConfigError, ValueError, OSError) as err:
        print(f"selftrain: error: {err}", file=sys.stderr)
        return None
    print_override_notes(split_args(args)[1])
    if not model_on_disk(config):
        print(
            f"selftrain: note: {model_named(config.model)} is not on disk yet (not converted or downloaded): its "
            "context, modules and the answers' length in its tokens are checked once a campaign has it",
            file=sys.stderr,
        )
    return config


def print_override_notes(overrides: Sequence[str]) -> None:
    """A `selftrain: note: ...` line on stderr for each field set more than once (`repeated_overrides`)."""
    for note in repeated_overrides(overrides):
        print(f"selftrain: note: {note}", file=sys.stderr)


@contextlib.contextmanager
def local_prefect_settings() -> Iterator[None]:
    """Prefect settings for a run on the embedded (temporary) server.

    Flow-run heartbeats exist so that a server can mark runs of a dead process as crashed. The
    temporary server dies with this process, so they buy nothing here, while Prefect 3.8 waits up to
    a second at the end of every flow run for the heartbeat thread (benchmarks/round_overhead.py).
    With a real server (PREFECT_API_URL set, in the environment or the active Prefect profile) they stay on.
    """
    from prefect.settings import temporary_settings

    from flows.liveness import server_configured

    if server_configured():
        yield
        return

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def launch(start: Callable[[], T], resume: Sequence[str] | None = None, preload: Sequence[str] = ()) -> T:
    """Call `start` (which runs a flow), stopped cleanly by Ctrl-C or SIGTERM.

    Prefect's temporary server is started first in its own session (`flows/interrupt.py`), so a terminal's
    Ctrl-C reaches only this process, which records the interruption while the server still answers. On an
    interruption one line says so (with the command that resumes, when `resume` is given) and the process
    exits with 128 + the signal number (130, 143); a `StopError` (or a `PromptFileError`: `flows.interrupt.stop`)
    is one line too, with exit status 2 (and Prefect's log of the run shows its message without a traceback); any
    other error ends with one line naming it, exit status 1, after its traceback (Prefect's log of the flow run
    holds it once, so Python does not print it again).

    Args:
        start: Runs the flow and returns its result.
        resume: The command's arguments after `selftrain` that resume the interrupted work, if any.
        preload: Modules `start` imports (its flow's), imported while the temporary server starts up.
    """
    from flows.interrupt import (
        exit_now,
        failure_line,
        interruptible,
        is_interruption,
        raised_in_flow_run,
        signal_number,
        start_own_session_server,
        stop,
        stops_without_traceback,
    )

    try:
        with interruptible(), local_prefect_settings(), stops_without_traceback():
            server_ready = start_own_session_server()  # out of the terminal's process group: Ctrl-C reaches only us
            for module in preload:
                importlib.import_module(module)
            server_ready()
            return start()
    except BaseException as error:
        if is_interruption(error):
            hint = f"; resume with: {shlex.join(['selftrain', *resume])}" if resume else ""
            print(f"selftrain: interrupted{hint}", file=sys.stderr)
            exit_now(128 + signal_number(error))
        if not isinstance(error, Exception):
            raise
        found = stop(error)
        if found is not None:
            _stop_server_quietly()
            print(f"selftrain: error: {found}", file=sys.stderr)
            raise SystemExit(2) from None
        # A failure: the flow run's log above holds its traceback (Prefect logs it), which Python would print
        # again; one line ends it instead. A failure outside a flow run keeps its traceback.
        _stop_server_quietly()
        if not raised_in_flow_run(error):
            traceback.print_exception(error)
        print(f"selftrain: error: {failure_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None


def _stop_server_quietly() -> None:
    """Stop Prefect's temporary server before the command's last line, which would otherwise be followed by
    Prefect's "Stopping temporary server" at exit; a failure to stop it is left to that exit."""
    from flows.interrupt import stop_temporary_server

    with contextlib.suppress(Exception):
        stop_temporary_server()


def print_campaign(config: CampaignConfig, summary: dict) -> None:
    """The per-round table of a finished campaign (`campaign_flow`'s summary: validation per round, test for the
    starting and each promoted policy, the final claim on test; `tasks.report.render_table`) and where to look."""
    from tasks.report import render_table
    from tasks.tracking_store import tracking_uri

    print("\n" + render_table(summary["rounds"], summary.get("claim")))
    if summary.get("claim") is None:  # a file campaign without prompts.test_path: validation decided, none reports
        print("no claim: the campaign has no test set (set prompts.test_path to score the start and the final policy)")
    if summary.get("few_shot_claim") is not None:  # evaluate.few_shot_baseline: the base behind its examples
        from flows.campaign import few_shot_label

        print(f"against {few_shot_label(config)}, " + summary["few_shot_claim"].sentence())
    if summary.get("greedy_claim") is not None:  # evaluate.resample_failed_working: the pair at greedy decoding
        print("the same, both answering greedily (no resampling), " + summary["greedy_claim"].sentence())
    if summary.get("by_kind"):  # the claim per kind of problem, against the few-shot bar when there is one
        print(summary["by_kind"])
    for name, claim in summary.get("extra_claims", {}).items():  # evaluate.extra_sets, each paired on its items
        print("extra set " + claim.sentence().replace(f"{name}, ", f"{name!r}, ", 1))
    uri = tracking_uri(config.tracking)
    print(f"\nMLflow campaign run: {summary['parent_run_id']}  (experiment {config.tracking.experiment!r})")
    print(f"Round data and adapters: {summary['workdir']}")
    print(f"See it in MLflow:  {venv_tool('mlflow')} ui --backend-store-uri {uri}")
    from flows.liveness import server_configured

    if not server_configured():
        print(
            f"See flow runs in Prefect: start `{venv_tool('prefect')} server start` and run again with "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )


def venv_tool(name: str) -> str:
    """How to call the console script `name` installed beside this Python, so a printed command works without an
    activated venv: relative to the working directory when under it (`.venv/bin/mlflow`), else absolute; the bare
    name when it is not there."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
