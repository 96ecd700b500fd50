"""The `selftrain` command line: run a campaign, validate a config, print the schema."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence

from configs.loader import ConfigError, describe_schema, load_config, split_args
from configs.schema import CampaignConfig

DEFAULT_CONFIG = "default"  # configs/default.yaml: the packaged Gemma 3 270M campaign
# Subcommands that live in their own flow modules: name -> (module, one-line help). Each module defines
# `configure(parser: argparse.ArgumentParser) -> None` and `main(ns: argparse.Namespace) -> int`.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("flows.serve", "serve the campaign as a Prefect deployment: selftrain serve [CONFIG] [--cron EXPR]"),
    "reproduce": ("flows.reproduce", "re-run a past round from MLflow and compare metrics: selftrain reproduce RUN_ID"),
    "ablation": ("flows.ablation", "compare recipes on the same prompts and seeds: selftrain ablation [CONFIG...]"),
    "judge-eval": ("flows.judge_eval", "compare judges on a labelled set: selftrain judge-eval [CONFIG] [k=v ...]"),
    "score": ("flows.score", "score prompt/response/answer rows with the verifier: selftrain score [CONFIG] FILE"),
}
TABLE_METRICS = [
    ("judge/accept_rate", "accept"),
    ("judge/pass_at_k", "pass@k"),
    ("select/rows", "selected"),
    ("train/loss", "loss"),
    ("eval/accuracy", "heldout acc"),
    ("eval/ci_low", "ci low"),
    ("eval/ci_high", "ci high"),
]


def _split(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """`[CONFIG] [key=value ...]` -> (config or None, overrides); see `configs.loader.split_args`."""
    return split_args(args)


def load_checked(args: Sequence[str]) -> CampaignConfig | None:
    """The config `[CONFIG] [key=value ...]` names (the default campaign without CONFIG), checked by `preflight`.

    Returns:
        The config, or None after printing the error (field, file or line, and reason) to stderr.
    """
    from flows.preflight import preflight

    path, overrides = _split(args)
    try:
        config = load_config(path or DEFAULT_CONFIG, overrides)
        preflight(config)
    except (ConfigError, ValueError, OSError) as err:
        print(f"selftrain: error: {err}", file=sys.stderr)
        return None
    return config


def _quiet_defaults() -> None:
    # Offline machines: Prefect's telemetry otherwise logs connection errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server's 20 s start-up limit is too short on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Deprecation notices from transformers/TRL internals say nothing a selftrain user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)


@contextlib.contextmanager
def local_prefect_settings() -> Iterator[None]:
    """Prefect settings for a run on the embedded (temporary) server.

    Flow-run heartbeats exist so that a server can mark runs of a dead process as crashed. The
    temporary server dies with this process, so they buy nothing here, while Prefect 3.8 waits up to
    a second at the end of every flow run for the heartbeat thread (benchmarks/round_overhead.py).
    With a real server (PREFECT_API_URL set) they stay on.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def run(config: CampaignConfig, fresh: bool = False) -> dict:
    """Run (or resume, unless `fresh`) the campaign flow and print the per-round table and where to look."""
    _quiet_defaults()
    import datasets
    from transformers.utils import logging as hf_logging

    from flows.campaign import campaign_flow

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # TRL's dataset preparation; the env var is read at import, too late here
    from flows.interrupt import start_own_session_server
    from tasks.tracking import client_for, tracking_uri

    with local_prefect_settings():
        start_own_session_server()  # out of the terminal's process group: Ctrl-C reaches only this process
        summary = campaign_flow(config, fresh=fresh)
    client = client_for(config.tracking)
    print("\nround  " + "  ".join(f"{label:>11}" for _, label in TABLE_METRICS) + "  promoted")
    for row in summary["rounds"]:
        metrics = client.get_run(row["run_id"]).data.metrics
        if row["round"] == 0:  # round 0 lives on the parent run, whose metrics hold the last step only
            metrics = {f"eval/{k}": row[k] for k in ("accuracy", "ci_low", "ci_high")}
        cells = [f"{metrics[k]:>11.3f}" if k in metrics else f"{'-':>11}" for k, _ in TABLE_METRICS]
        print(f"{row['round']:>5}  " + "  ".join(cells) + f"  {'yes' if row['promoted'] else 'no':>8}")
    uri = tracking_uri(config.tracking)
    print(f"\nMLflow campaign run: {summary['parent_run_id']}  (experiment {config.tracking.experiment!r})")
    print(f"Round data and adapters: {summary['workdir']}")
    print(f"See it in MLflow:  mlflow ui --backend-store-uri {uri}")
    if not os.environ.get("PREFECT_API_URL"):
        print("See flow runs in Prefect: start `prefect server start` and run again with PREFECT_API_URL set")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `selftrain` command."""
    _quiet_defaults()  # before anything imports Prefect, which reads its settings from the environment once
    parser = argparse.ArgumentParser(prog="selftrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run a campaign: selftrain run [CONFIG] [key=value ...]")
    run_p.add_argument("args", nargs="*", help="config file or shipped name, then dotted key=value overrides")
    run_p.add_argument("--fresh", action="store_true", help="start a new campaign, never resume an unfinished one")
    val_p = sub.add_parser("validate", help="check a config and print it resolved")
    val_p.add_argument("args", nargs="*", help="config file or shipped name, then overrides")
    schema_p = sub.add_parser("schema", help="print every config field with its default and meaning")
    schema_p.add_argument("--json", action="store_true", help="print the JSON schema instead")
    for name, (module, help_text) in EXTRA_COMMANDS.items():
        importlib.import_module(module).configure(sub.add_parser(name, help=help_text))
    ns = parser.parse_args(argv)

    if ns.command in EXTRA_COMMANDS:
        return importlib.import_module(EXTRA_COMMANDS[ns.command][0]).main(ns)

    if ns.command == "schema":
        print(json.dumps(CampaignConfig.model_json_schema(), indent=2) if ns.json else describe_schema())
        return 0
    config = load_checked(ns.args)
    if config is None:
        return 2
    if ns.command == "validate":
        print(config.model_dump_json(indent=2))
        return 0
    return run_interruptible(config, ns.args, fresh=ns.fresh)


def run_interruptible(config: CampaignConfig, args: Sequence[str], fresh: bool = False) -> int:
    """`run`, stopped cleanly by Ctrl-C or SIGTERM: the runs are recorded as interrupted (flows/campaign.py),
    one line says how to resume, and the exit status is 128 + the signal number (130, 143).

    Args:
        config: The checked config.
        args: The command's `[CONFIG] [key=value ...]`, repeated in the resume command.
        fresh: Start a new campaign; the resume command leaves `--fresh` out, so it continues this one.
    """
    from flows.interrupt import exit_now, interruptible, is_interruption, signal_number

    try:
        with interruptible():
            run(config, fresh=fresh)
    except BaseException as error:
        if not is_interruption(error):
            raise
        print(f"selftrain: interrupted; resume with: {shlex.join(['selftrain', 'run', *args])}", file=sys.stderr)
        exit_now(128 + signal_number(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
