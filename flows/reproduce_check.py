"""What `selftrain reproduce` reads from the MLflow store and how it judges the re-run: a run's artifacts
downloaded (one line naming the run, the path and the store when one is gone), the campaign's input files checked
against the hashes it recorded, and every metric, data file and
adapter weight of the re-run compared with the original's, with the sources of difference this machine shows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from configs.schema import TRAIN_DTYPE_METRICS, CampaignConfig
from tasks.records import sha256_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

TIMING_SUFFIXES = ("seconds", "per_s")  # wall-clock measurements: never expected to match


class MissingArtifactError(ValueError):
    """A run's artifact the round needs is not in the store (deleted or moved), named with the run and the store."""


def download(client: MlflowClient, uri: str, dest: Path) -> Path:
    """Download a `runs:/<run_id>/<path>` artifact (file or folder) into `dest` (`tasks.tracking.download_artifact`).

    Raises:
        MissingArtifactError: the run's artifacts hold nothing at `path`.
    """
    from tasks.tracking import ArtifactGone, download_artifact

    try:
        return download_artifact(uri, dest, client.tracking_uri)
    except ArtifactGone:
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        raise MissingArtifactError(missing(client, run_id, path)) from None


def missing(client: MlflowClient, run_id: str, path: str) -> str:
    return f"run {run_id} has no artifact {path} in {client.tracking_uri} (was it deleted or moved?); nothing was run"


def check_input_files(client: MlflowClient, original: Run, config: CampaignConfig) -> None:
    """Refuse, before anything runs, a round whose campaign read prompt, bank or extra-set files (the sha256 of each
    in its campaign run's `selftrain.input_files` tag) that are missing here or hold other bytes now: the round
    would draw other prompts, and every file it made would differ for a reason the comparison cannot name.
    Campaigns recorded before the tag (or of the built-in task, which reads no file) are not checked.

    Raises:
        MissingArtifactError: naming the field, the file and what differs; nothing was run.
    """
    from flows.campaign_state import input_files, input_paths

    parent = original.data.tags.get("mlflow.parentRunId")
    tags = client.get_run(parent).data.tags if parent else {}
    recorded: dict[str, str] = json.loads(tags.get("selftrain.input_files", "{}"))
    if not recorded:
        return
    now, paths = input_files(config), input_paths(config)
    for field, sha in sorted(recorded.items()):
        path = paths.get(field, "")
        where = f"run {original.info.run_id}: {field}={path}"
        if field not in now:
            relative = "" if Path(path).is_absolute() else f" (read relative to the working directory, {Path.cwd()})"
            raise MissingArtifactError(
                f"{where}: not found{relative}; the round read it, so run from the folder its campaign ran in or "
                "restore it; nothing was run"
            )
        if now[field] != sha:
            raise MissingArtifactError(
                f"{where}: holds other bytes than the round read (sha256 {sha[:12]}... then, {now[field][:12]}... "
                "now), so it would draw other prompts; restore the file to reproduce the round; nothing was run"
            )


def _both_nan(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isnan(a) and math.isnan(b)


def compare(client: MlflowClient, original: str, reproduced: str, folder: Path) -> dict:
    """Every metric of both runs side by side, plus the data files and adapter weights by content hash."""
    from tasks.layout import ACCUMULATED, DATA_FILES
    from tasks.rationalize import RATIONALIZED

    # Compared by content hash when the original round logged them (under `data/` of its run), besides the adapter.
    compared_files = (*DATA_FILES, ACCUMULATED, RATIONALIZED, "filter-scores.jsonl")
    old, new = client.get_run(original).data.metrics, client.get_run(reproduced).data.metrics
    rows, mismatches = [], []
    for key in sorted(set(old) | set(new)):
        timing = key.endswith(TIMING_SUFFIXES)
        same = old.get(key) == new.get(key) or _both_nan(old.get(key), new.get(key))  # NaN: logged before 2026-12-07
        rows.append(
            {"metric": key, "original": old.get(key), "reproduced": new.get(key), "timing": timing, "same": same}
        )
        if not same and not timing:
            mismatches.append(key)
    files = {}
    downloads = folder.parent / "inputs" / "original"
    for name in (*compared_files, "adapter/adapter_model.safetensors"):
        local = folder / name
        try:
            logged = download(client, f"runs:/{original}/{'data/' + name if '/' not in name else name}", downloads)
        except Exception:  # noqa: BLE001 (an artifact the round did not log, e.g. no adapter when training was skipped)
            continue
        files[name] = local.exists() and sha256_file(local) == sha256_file(logged)
        if not files[name]:
            mismatches.append(name)
    return {"metrics": rows, "files": files, "mismatches": mismatches, "match": not mismatches}


def nondeterminism(recorded: dict, config: CampaignConfig) -> list[str]:
    """The sources of difference this machine shows against the original round (empty: none known)."""
    from models.loading import resolve_train_dtype
    from tasks.tracking import library_versions

    sources = []
    now = library_versions()
    for name, version in recorded.get("versions", {}).items():
        if now.get(name) != version:
            sources.append(f"{name} {version} then, {now.get(name)} now")
    if recorded["config"]["model"]["torch_threads"] != config.model.torch_threads:
        sources.append("a different torch thread count changes the order of float reductions")
    for field, metric in TRAIN_DTYPE_METRICS.items():
        if recorded["config"]["train"].get(field) == "auto":
            sources.append(
                f"train.{field}=auto trains in {resolve_train_dtype('auto')} on this CPU; the original's metric "
                f"train/{metric} says which it trained in (1: bfloat16)"
            )
    return sources


def format_report(report: dict) -> str:
    """The comparison as a console table."""
    lines = [f"{'metric':<28} {'original':>14} {'reproduced':>14}  match"]
    for row in report["metrics"]:
        mark = "timing" if row["timing"] else ("yes" if row["same"] else "NO")
        cells = [f"{v:>14.6g}" if isinstance(v, float) else f"{'-':>14}" for v in (row["original"], row["reproduced"])]
        lines.append(f"{row['metric']:<28} {cells[0]} {cells[1]}  {mark}")
    for name, same in report["files"].items():
        lines.append(f"{name:<58}  {'identical' if same else 'DIFFERS'}")
    lines.append("timing metrics measure wall-clock time and are not expected to match")
    if report["match"]:
        lines.append(f"reproduced exactly: run {report['reproduced']} matches {report['original']}")
    else:
        lines.append("differs: " + ", ".join(report["mismatches"]))
        lines.append("known sources on this machine: " + ("; ".join(report["sources"]) or "none found"))
    return "\n".join(lines)
