"""What a registered policy was trained on, read back from MLflow: the rows behind a version's adapter, so a
campaign that starts from it (`start_from: champion`) can check they are not what it scores (`tasks.leakage`).

A version's round run logged its training prompts and selected rows under `data/` (`tasks.prompts.prompts_task`,
`tasks.select`); the campaign run it belongs to names the version that campaign started from in its tag
`selftrain.start_policy`, and so on down to the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from configs.schema import TrackingConfig
from tasks.records import Record, read_records
from tasks.tracking import PARENT_TAG
from tasks.tracking_store import client_for


class TrainedOn(NamedTuple):
    """What a registered version was trained on, as its rounds logged it (`trained_prompts`): the rows, and what
    was read, one entry per campaign ('rounds 1-2 of campaign run 3f2a... (selftrain-tiny version 2)'), and what the
    store no longer holds (a deleted version or campaign run, a round without a run or without its files)."""

    rows: list[Record]
    read: list[str]
    missing: list[str]


TRAINED_FILES = ("prompts.jsonl", "selected.jsonl")  # a round run's training prompts and selected rows, under data/


def trained_prompts(cfg: TrackingConfig, version: ModelVersion, dest: str | Path) -> TrainedOn:
    """The prompts behind a registered version's adapter: every round of its campaign up to its own (each round's
    training prompts and selected rows, gold rows among them, as the round run logged them under `data/`; earlier
    rounds whether promoted or not, so more than the adapter saw rather than less), and the same for the version
    its campaign started from (the campaign run's tag `selftrain.start_policy`), and so on down to the base.
    Files are downloaded into `dest`."""
    client = client_for(cfg)
    rows: list[Record] = []
    read: list[str] = []
    missing: list[str] = []
    pending: list[tuple[str, str]] = [(version.name, str(version.version))]
    seen: set[tuple[str, str]] = set()
    while pending:
        name, number = pending.pop()
        label = f"{name} version {number}"
        if (name, number) in seen:
            continue
        seen.add((name, number))
        try:
            run = client.get_run(str(client.get_model_version(name, number).run_id))
        except MlflowException as error:
            missing.append(f"{label} or its round run is no longer in the store ({error.error_code})")
            continue
        parent = run.data.tags.get(PARENT_TAG)
        last = int(run.data.tags.get("selftrain.round", "0"))
        if parent is None:
            missing.append(f"{label}: its run {run.info.run_id} has no campaign run")
            continue
        found = client.search_runs([run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'", max_results=1000)
        rounds = sorted(
            (int(r.data.tags["selftrain.round"]), r.info.run_id)
            for r in found
            if r.data.tags.get("selftrain.round", "").isdigit() and 1 <= int(r.data.tags["selftrain.round"]) <= last
        )
        for index in sorted(set(range(1, last + 1)) - {index for index, _ in rounds}):
            missing.append(f"{label}: round {index} of campaign run {parent} has no run in the store")
        for index, run_id in rounds:
            files = [_logged_rows(client, run_id, file, Path(dest) / run_id) for file in TRAINED_FILES]
            if all(file is None for file in files):
                missing.append(f"{label}: round {index} (run {run_id}) logged no {' or '.join(TRAINED_FILES)}")
            rows += [row for file in files if file is not None for row in file]
        read.append(f"rounds 1-{last} of campaign run {parent} ({label})")
        try:
            start = client.get_run(parent).data.tags.get("selftrain.start_policy")
        except MlflowException as error:
            missing.append(
                f"{label}: its campaign run {parent}, which names the version it started from, is gone "
                f"({error.error_code})"
            )
            continue
        if start:
            start_name, _, start_number = start.rpartition("/")
            pending.append((start_name, start_number))
    return TrainedOn(rows, read, missing)


def _logged_rows(client: MlflowClient, run_id: str, name: str, dest: Path) -> list[Record] | None:
    """The rows of `data/<name>` logged on a run, or None when the run holds no such file."""
    if name not in {Path(item.path).name for item in client.list_artifacts(run_id, "data")}:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    return read_records(client.download_artifacts(run_id, f"data/{name}", str(dest)))
