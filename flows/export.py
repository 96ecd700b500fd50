"""`selftrain export NAME[@ALIAS|/VERSION] DIR [--merged]`: a registered policy as files any tool loads.

`--merged` folds the adapter into its base and writes a standard checkpoint with its tokenizer, which
`AutoModelForCausalLM.from_pretrained(DIR)` loads with no selftrain code. Without it, DIR holds the
adapter, whose `adapter_config.json` names a base that resolves elsewhere: the hub id when the base came
from the hub, else the relative path `base` of a copy in `DIR/base/` (resolved against the working
directory; DIR/README.md says how to load it). Either way everything is written into a temporary folder
beside DIR and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from configs.schema import TrackingConfig

DEFAULT_STORE = "runs"  # the default config's output folder, where `selftrain run` keeps mlflow.db


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare `selftrain export NAME[@ALIAS|/VERSION] DIR [--merged] [--tracking-uri URI]`."""
    parser.add_argument("model", metavar="NAME[@ALIAS|/VERSION]", help="registered model (default alias: champion)")
    parser.add_argument("dir", metavar="DIR", help="target folder: absent or empty")
    parser.add_argument("--merged", action="store_true", help="write one merged checkpoint instead of an adapter")
    parser.add_argument(
        "--tracking-uri",
        help=f"MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///{DEFAULT_STORE}/mlflow.db)",
    )


def tracking_config(uri: str | None) -> TrackingConfig:
    """The store to read: `uri`, else MLFLOW_TRACKING_URI, else the default output folder's SQLite file.

    Raises:
        ValueError: a SQLite store whose file does not exist (it would be created empty).
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_STORE).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no MLflow store at {uri}: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    return TrackingConfig(tracking_uri=uri)


def export(cfg: TrackingConfig, spec: str, target: str | Path, *, merged: bool = False) -> Path:
    """Export the version `spec` names into `target` (absent or empty); returns the target.

    Raises:
        ValueError: an unknown model, alias or version, a non-empty target, or a base not on this machine.
    """
    from models.pyfunc_policy import save_adapter, save_merged
    from tasks.model_registry import download_version, resolve_version

    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target}: exists and is not an empty folder; export into a new folder")
    version = resolve_version(cfg, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        adapter, base, settings = download_version(cfg, version, Path(tmp) / "download")
        out = Path(tmp) / "out"
        template = settings.get("template", "{prompt}")
        if merged:
            save_merged(base, adapter, out, template=template)
        else:
            save_adapter(adapter, out, base=base, hub_id=settings["base"]["source"] == "hub", template=template)
        if target.exists():
            target.rmdir()
        shutil.move(str(out), target)
    return target


def main(ns: argparse.Namespace) -> int:
    """Run `selftrain export`; 2 with a one-line error (nothing written) for bad input."""
    try:
        path = export(tracking_config(ns.tracking_uri), ns.model, ns.dir, merged=ns.merged)
    except (ValueError, OSError) as err:
        print(f"selftrain: error: {err}", file=sys.stderr)
        return 2
    kind = "merged checkpoint" if ns.merged else "adapter (see README.md in it for its base)"
    print(f"exported {ns.model} to {path}: {kind}")
    return 0
