"""`selftrain ablation [CONFIG...]`: run several recipes on the same prompts and seeds, then compare them.

Each config is one arm (default: every YAML under configs/experiments/), checked like `selftrain run`'s.
The ablation is a Prefect flow whose arms run one after the other as campaign subflows (so the Prefect UI
shows the ablation with its campaigns and rounds beneath it); an ablation run in MLflow holds the table, the
plot and per-arm metrics, and every campaign run is tagged `selftrain.ablation_run_id` with its id. An
interrupted ablation resumes with the same command: finished arms start anew, the interrupted one resumes.
The flow is in flows/ablation_flow.py, imported only to run it: this module is imported for every `selftrain`
command line (`--help` included), which must not wait for Prefect, torch and MLflow to load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from configs.fields import SAFE_NAME, SAFE_NAME_RULE
from configs.loader import ConfigError
from configs.schema import CampaignConfig
from flows.launch import checked_config, launch, quiet_progress_bars

EXPERIMENTS = Path(__file__).resolve().parent.parent / "configs" / "experiments"
SHARED = ("seed", "rounds", "prompts", "generate", "evaluate", "model")  # what every arm must agree on
# Parts of a shared section that are recipe, not setting: STaR rationalization samples the failed prompts again
# with a hint, on top of the same k samples every arm draws.
RECIPE_FIELDS = {"generate": ("rationalize", "hint")}


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `selftrain ablation`."""
    parser.add_argument("configs", nargs="*", help="arm configs (default: every configs/experiments/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every arm")
    parser.add_argument("--name", default="ablation", help="name of the ablation run")


def check_comparable(configs: list[CampaignConfig]) -> None:
    """Raise ValueError unless the arms share seed, rounds, prompts, sampling, evaluation and model."""
    for key in SHARED:
        arms: dict[str, list[str]] = {}  # the arms' names by their value of `key`
        for config in configs:
            arms.setdefault(json.dumps(_shared(config, key)), []).append(config.name)
        if len(arms) > 1:
            groups = " against ".join(", ".join(names) for names in arms.values())
            raise ValueError(
                f"arms differ in {key!r} ({groups}): an ablation compares recipes on the same prompts and seeds"
            )
    if len({c.name for c in configs}) < len(configs):
        raise ValueError("arm names (config `name`) must differ")


def check_arm(path: str) -> None:
    """Raise ValueError when an arm argument is an override (`key=value`, no file of that name), not a config:
    taken as an arm, `rounds=1` would be the default config with one round, refused as an arm that differs."""
    if "=" in path and not Path(path).expanduser().exists():
        raise ValueError(
            f"{path}: an override, not an arm config (no such file); pass overrides with --set {path} "
            "(applied to every arm)"
        )


def arm_config(path: str, overrides: list[str]) -> CampaignConfig:
    """The arm `path` with the overrides every arm gets (`--set`), checked as `selftrain run` checks a config; an
    error names the arm's file first (one of several arms, every configs/experiments/*.yaml by default)."""
    try:
        return checked_config([path, *overrides])
    except (ConfigError, ValueError, OSError) as err:
        raise ValueError(str(err) if str(err).startswith(path) else f"arm {path}: {err}") from None


def _shared(config: CampaignConfig, key: str) -> object:
    """The part of `config`'s field `key` that every arm must agree on."""
    value = getattr(config, key)
    if key not in SHARED[2:]:
        return value
    dumped = value.model_dump()
    return {k: v for k, v in dumped.items() if k not in RECIPE_FIELDS.get(key, ())}


def main(ns: argparse.Namespace) -> int:
    """Check every arm as `selftrain run` does, run the ablation flow, print and log the table; 2 on a bad
    config (before anything is recorded)."""
    paths = ns.configs or sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    try:
        if not SAFE_NAME.match(ns.name):  # it names a folder under each arm's output_dir
            raise ValueError(f"--name {ns.name!r}: {SAFE_NAME_RULE}")
        for path in paths:
            check_arm(path)
        configs = [arm_config(path, ns.set) for path in paths]
        check_comparable(configs)
    except (ConfigError, ValueError, OSError) as err:
        print(f"selftrain: error: {err}", file=sys.stderr)
        return 2
    quiet_progress_bars()
    sets = [item for override in ns.set for item in ("--set", override)]

    def start() -> object:
        from flows.ablation_flow import ablation_flow

        return ablation_flow(configs, ns.name)

    launch(start, resume=["ablation", *ns.configs, *sets, "--name", ns.name], preload=["flows.ablation_flow"])
    return 0
