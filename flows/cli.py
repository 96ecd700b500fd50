"""The `selftrain` command line: parse the subcommand and hand it to the module that runs it."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence

from configs.loader import describe_schema
from configs.schema import CampaignConfig
from flows.launch import launch, load_checked, print_campaign, quiet_defaults, quiet_progress_bars


def run(config: CampaignConfig, fresh: bool = False) -> dict:
    """Run (or resume, unless `fresh`) the campaign flow and print the per-round table and where to look."""
    quiet_defaults()
    quiet_progress_bars()
    from flows.campaign import campaign_flow

    summary = campaign_flow(config, fresh=fresh)
    print_campaign(config, summary)
    return summary


def run_interruptible(config: CampaignConfig, args: Sequence[str], fresh: bool = False) -> int:
    """`run`, stopped cleanly by Ctrl-C or SIGTERM: the runs are recorded as interrupted (flows/campaign.py),
    one line says how to resume, and the exit status is 128 + the signal number (130, 143).

    Args:
        config: The checked config.
        args: The command's `[CONFIG] [key=value ...]`, repeated in the resume command.
        fresh: Start a new campaign; the resume command leaves `--fresh` out, so it continues this one.
    """
    launch(lambda: run(config, fresh=fresh), resume=["run", *args], preload=["flows.campaign"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `selftrain` command."""
    quiet_defaults()  # before anything imports Prefect, which reads its settings from the environment once
    # Subcommands in their own modules: each defines `configure(parser)` and `main(ns) -> int`, and imports its
    # flow (Prefect, torch, MLflow: 10 s of CPU) only in `main`, so `--help`, `validate`, `schema` and config
    # errors answer at once (tests/flows/test_cli.py). Imported after the defaults all the same.
    from flows import ablation, export, judge_eval, reproduce, score, serve, submit

    commands = {
        "serve": (serve, "serve the campaign as a Prefect deployment: selftrain serve [CONFIG] [--cron EXPR]"),
        "submit": (submit, "start a served deployment with changed fields: selftrain submit DEPLOYMENT [k=v ...]"),
        "reproduce": (reproduce, "re-run a past round from MLflow and compare metrics: selftrain reproduce RUN_ID"),
        "ablation": (ablation, "compare recipes on the same prompts and seeds: selftrain ablation [CONFIG...]"),
        "judge-eval": (judge_eval, "compare judges on a labelled set: selftrain judge-eval [CONFIG] [k=v ...]"),
        "score": (score, "score prompt/response/answer rows with the verifier: selftrain score [CONFIG] FILE"),
        "export": (export, "write a registered policy as files: selftrain export NAME[@ALIAS|/VERSION] DIR [--merged]"),
    }
    parser = argparse.ArgumentParser(prog="selftrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run a campaign: selftrain run [CONFIG] [key=value ...]")
    run_p.add_argument("args", nargs="*", help="config file or shipped name, then dotted key=value overrides")
    run_p.add_argument("--fresh", action="store_true", help="start a new campaign, never resume an unfinished one")
    val_p = sub.add_parser("validate", help="check a config and print it resolved")
    val_p.add_argument("args", nargs="*", help="config file or shipped name, then overrides")
    schema_p = sub.add_parser("schema", help="print every config field with its default and meaning")
    schema_p.add_argument("--json", action="store_true", help="print the JSON schema instead")
    for name, (module, help_text) in commands.items():
        module.configure(sub.add_parser(name, help=help_text))
    ns = parse_intermixed(parser, argv)

    if ns.command in commands:
        return commands[ns.command][0].main(ns)
    if ns.command == "schema":
        print(json.dumps(CampaignConfig.model_json_schema(), indent=2) if ns.json else describe_schema())
        return 0
    config = load_checked(ns.args)
    if config is None:
        return 2
    if ns.command == "validate":
        problem = prefect_server_problem(ask=False)
        if problem:
            print(f"selftrain: error: {problem}", file=sys.stderr)
            return 2
        print(config.model_dump_json(indent=2))
        return 0
    problem = prefect_server_problem() or ray_cluster_problem(config)
    if problem:
        print(f"selftrain: error: {problem}", file=sys.stderr)
        return 2
    return run_interruptible(config, ns.args, fresh=ns.fresh)


def prefect_server_problem(*, ask: bool = True) -> str | None:
    """Why the Prefect server PREFECT_API_URL names (in the environment or the active profile) cannot take the
    run, or None: none is named (the temporary one starts) or it answers. With `ask` false only the URL's form is
    checked, for `validate`, which checks inputs, not servers."""
    from prefect.settings import PREFECT_API_URL

    from flows.serve import server_problem, url_problem

    url = PREFECT_API_URL.value()
    if not url:
        return None
    return server_problem(url) if ask else url_problem(url)


def ray_cluster_problem(config: CampaignConfig) -> str | None:
    """Why the Ray cluster `scale.ray_address` names cannot take the campaign's shards (`check_ray_cluster`), or
    None; asked before the run starts, as the Prefect server is."""
    from flows.preflight import check_ray_cluster

    try:
        check_ray_cluster(config)
    except (ConnectionError, ValueError) as error:
        return str(error)
    return None


# The list positionals of the subcommands (config, overrides, arm configs), which may go on after a flag.
INTERMIXED = ("args", "overrides", "configs")


def parse_intermixed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse as `parser.parse_args`, but positionals after a flag join the subcommand's list positional:
    `selftrain run tiny --fresh rounds=1` is `run tiny rounds=1 --fresh` (argparse's `parse_intermixed_args` does
    not support subcommands). An unknown flag is still argparse's usual error."""
    ns, extra = parser.parse_known_args(argv)
    target = next((name for name in INTERMIXED if isinstance(getattr(ns, name, None), list)), None)
    if not extra or target is None or any(item.startswith("-") for item in extra):
        return parser.parse_args(argv)  # nothing left over, or argparse's error for what is
    getattr(ns, target).extend(extra)
    return ns


def console() -> int:
    """The installed `selftrain` command: `main`, then every object it leaves frozen for a quick exit.

    A campaign's process ends holding millions of objects (torch, transformers, Prefect, MLflow), and the
    cyclic collector's passes over them while the interpreter shuts down took 4 s of every `selftrain run`
    (benchmarks/startup.py). Frozen (`gc.freeze`), they are left to the exit, which frees the memory anyway.
    Not in `main`, which tests and other programs call in their own long-lived processes.
    """
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(console())
