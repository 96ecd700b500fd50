"""Recording a campaign in MLflow with explicit run ids: one parent run, one child run per round.

Runs are found again by their tags (`open_run`), so a resumed campaign reopens its runs instead of
duplicating them; runs a dead process left RUNNING are closed as FAILED (`fail_running`).

Nothing here uses MLflow's fluent "active run": the active run is per thread, and Prefect may run a
task on another thread, so every call names its run id (see shared NOTES). Metrics are batched
(`log_batch` costs ~0.15 ms per value against ~6 ms per `log_metric` call on SQLite).
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunStatus, RunTag
from pydantic import BaseModel, ConfigDict

from configs.schema import CampaignConfig, TrackingConfig
from tasks.records import DatasetRef, ModelRef, atomic_write_text, read_records
from tasks.tracking_store import client_for, ensure_experiment, retry_conflicts

PARENT_TAG = "mlflow.parentRunId"


def git_commit() -> str | None:
    """The commit of the selftrain checkout, set by hand: MLflow sets it only for scripts in the repo."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def start_run(
    cfg: TrackingConfig,
    name: str,
    *,
    params: Mapping[str, str],
    tags: Mapping[str, str | None],
    parent_run_id: str | None = None,
) -> str:
    """Create a run (a child when `parent_run_id` is given), log params and tags, return its id. The run carries
    the tags `mlflow.start_run` would set (`mlflow.user`, `mlflow.source.name`, `mlflow.source.type`: the UI's User
    and Source columns), under ours."""
    from mlflow.tracking.context.registry import resolve_tags

    client = client_for(cfg)
    all_tags = {k: v for k, v in tags.items() if v is not None}
    all_tags["mlflow.source.git.commit"] = git_commit() or "unknown"
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(ensure_experiment(cfg), run_name=name, tags=resolve_tags(all_tags))
    log_params(cfg, run.info.run_id, params)
    return run.info.run_id


PARAM_LIMIT = 6000  # MLflow's longest param value
CUT = " ...[cut: the whole value is in the campaign run's config.json]"


def param_value(value: object) -> str:
    """A param's text, cut to MLflow's limit with a note saying so (a long prompt template, say)."""
    text = str(value)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - len(CUT)] + CUT


def log_params(cfg: TrackingConfig, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches; re-logging a param with the same value is a no-op in MLflow (a new value fails).
    A value past MLflow's limit is cut with a note (`param_value`)."""
    client = client_for(cfg)
    items = [Param(k, param_value(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[start : start + 100], synchronous=True)


def log_params_again(cfg: TrackingConfig, run_id: str, params: Mapping[str, str]) -> None:
    """Log `params` on a reopened run. A param it holds in another text that YAML reads as the same value, as
    code that wrote params differently logged it (`['\\n\\n    ']` for `["\\n"]`), is left as it is; a param
    whose value changed is logged, so MLflow refuses it loudly."""
    logged = client_for(cfg).get_run(run_id).data.params
    log_params(cfg, run_id, {k: v for k, v in params.items() if k not in logged or not same_value(logged[k], v)})


def same_value(old: str, new: str) -> bool:
    """Whether two param texts hold the same value: equal, or read alike by YAML (the configs' own reader)."""
    if old == param_value(new):
        return True
    try:
        return bool(yaml.safe_load(old) == yaml.safe_load(new))
    except yaml.YAMLError:
        return False


def find_runs(cfg: TrackingConfig, tags: Mapping[str, str], statuses: tuple[str, ...] = ()) -> list[Run]:
    """Runs of the experiment carrying all `tags` (and one of `statuses`, if given), newest first."""
    client = client_for(cfg)
    found = client.get_experiment_by_name(cfg.experiment)
    if found is None:
        return []
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if len(statuses) == 1:
        clauses.append(f"attributes.status = '{statuses[0]}'")
    runs = client.search_runs(
        [found.experiment_id], " and ".join(clauses), max_results=1000, order_by=["attributes.start_time DESC"]
    )
    return [run for run in runs if not statuses or run.info.status in statuses]  # the filter has no IN for status


def open_run(
    cfg: TrackingConfig,
    name: str,
    *,
    params: Mapping[str, str],
    tags: Mapping[str, str | None],
    parent_run_id: str | None = None,
    match: Mapping[str, str],
) -> str:
    """The run carrying the `match` tags (under `parent_run_id`), reopened; else a new run (see `start_run`).

    A resumed campaign calls this with the same tags as the crashed one, so no run is duplicated. The
    params are logged again (`log_params_again`): the same values are accepted, a changed value fails loudly.
    """
    wanted = dict(match) | ({PARENT_TAG: parent_run_id} if parent_run_id else {})
    existing = find_runs(cfg, wanted)
    if not existing:
        return start_run(cfg, name, params=params, tags={**tags, **match}, parent_run_id=parent_run_id)
    run_id = existing[0].info.run_id
    reopen_run(cfg, run_id)
    set_tags(cfg, run_id, {k: v for k, v in tags.items() if v is not None})
    log_params_again(cfg, run_id, params)
    return run_id


def reopen_run(cfg: TrackingConfig, run_id: str) -> None:
    """Mark a run RUNNING again and count the resumption in the tag `selftrain.resumed`."""
    client = client_for(cfg)
    count = int(client.get_run(run_id).data.tags.get("selftrain.resumed", "0"))
    client.update_run(run_id, status="RUNNING")
    set_tags(cfg, run_id, {"selftrain.resumed": str(count + 1)})


def fail_running(cfg: TrackingConfig, parent_run_id: str, reason: str, *, include_parent: bool = True) -> list[Run]:
    """Close as FAILED the parent run (unless `include_parent` is False) and its children that are still
    RUNNING; return those runs as they were.

    Called only for a campaign whose process is known to be dead (its folder lock is free) or ending:
    MLflow cannot tell a crashed writer from a live one, so without this its runs would stay RUNNING forever.
    """
    client = client_for(cfg)
    runs = ([client.get_run(parent_run_id)] if include_parent else []) + find_runs(cfg, {PARENT_TAG: parent_run_id})
    stale = [run for run in runs if run.info.status == "RUNNING"]
    for run in stale:
        set_tags(cfg, run.info.run_id, {"selftrain.failure": reason})
        end_run(cfg, run.info.run_id, "FAILED")
    return stale


def kill_running(cfg: TrackingConfig, parent_run_id: str) -> list[Run]:
    """Close as KILLED, tagged `selftrain.failure=interrupted`, the parent run and its children that are
    still RUNNING (a campaign stopped by Ctrl-C or SIGTERM); return those runs as they were."""
    client = client_for(cfg)
    runs = [client.get_run(parent_run_id), *find_runs(cfg, {PARENT_TAG: parent_run_id})]
    stale = [run for run in runs if run.info.status == "RUNNING"]
    for run in stale:
        set_tags(cfg, run.info.run_id, {"selftrain.failure": "interrupted"})
        end_run(cfg, run.info.run_id, "KILLED")
    return stale


class ArtifactGone(LookupError):
    """The tracking store holds nothing at an artifact URI (deleted or moved); the message is the URI."""


def artifact_names(uri: str, store: str) -> set[str]:
    """The names of the files and folders directly under the artifact URI `uri` of the tracking store `store`."""
    import mlflow.artifacts

    return {item.path.rsplit("/", 1)[-1] for item in mlflow.artifacts.list_artifacts(uri, tracking_uri=store)}


def download_artifact(uri: str, dest: str | Path, store: str) -> Path:
    """The artifact (file or folder) at `uri` (`runs:/<run>/<path>`, or a logged model's location) of the tracking
    store `store`, downloaded into `dest`.

    Raises:
        ArtifactGone: nothing is at `uri`, so that callers say which run or version lost it in one line (MLflow's
            own error is a traceback); something there that fails to download raises MLflow's error.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    Path(dest).mkdir(parents=True, exist_ok=True)
    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dest), tracking_uri=store))
    except MlflowException:
        parent, _, name = uri.rstrip("/").rpartition("/")
        # Listed with its slash (MLflow refuses a run's root `runs:/<run>` without it): there, yet not downloaded,
        # MLflow's error says why.
        if name in artifact_names(parent + "/", store):
            raise
        raise ArtifactGone(uri) from None


def download_json(cfg: TrackingConfig, run_id: str, artifact_path: str, dst: str | Path) -> dict:
    """Download a JSON artifact of a run into `dst` and parse it."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = client_for(cfg).download_artifacts(run_id, artifact_path, str(dst))
    return json.loads(Path(local).read_text(encoding="utf-8"))


def log_metrics(cfg: TrackingConfig, run_ids: list[str], metrics: Mapping[str, float], step: int) -> None:
    """Log `stage/name` metrics at `step` (the round) to each run in one batch per run.

    A value that is not a finite number (a share with nothing to count, e.g. `judge/accept_rate` of a round
    that sampled nothing) is left out: MLflow's charts and a reproduction's comparison would show NaN as a
    point, and as a point that differs from itself.

    A key whose latest point is already at `step` is skipped: a stage re-run by a resumed campaign
    (interrupted after it logged, before Prefect persisted its result) keeps one point per round instead
    of adding a second one. MLflow cannot delete a point, so the first value stays; the two can differ
    only in wall-time metrics (`generate/seconds`) or after a changed speed-only setting.
    """
    now = int(time.time() * 1000)
    client = client_for(cfg)
    for run_id in run_ids:
        logged = {m.key for m in client.get_run(run_id).data._metric_objs if m.step == step}  # latest per key
        entries = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if k not in logged and math.isfinite(float(v))
        ]
        if entries:
            client.log_batch(run_id, metrics=entries, synchronous=True)


def set_tags(cfg: TrackingConfig, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run in one batch."""
    entries = [RunTag(k, str(v)) for k, v in tags.items()]
    client_for(cfg).log_batch(run_id, tags=entries, synchronous=True)


def log_dataset(
    cfg: TrackingConfig, run_id: str, ref: DatasetRef, name: str, context: str, artifact_path: str = "data"
) -> None:
    """Record a record file as an MLflow dataset input (digest, schema) and as an artifact (the data, and its
    lineage beside it, under `artifact_path`)."""
    frame = pd.DataFrame(read_records(ref))
    with warnings.catch_warnings():  # schema hints about int columns and an ambiguous local source
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(frame, source=ref.path, name=name, digest=ref.sha256[:16])
        entity = dataset._to_mlflow_entity()  # infers the schema, which warns too
    entry = DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])
    client = client_for(cfg)
    # Campaigns of the same config log the same dataset (experiment, name, digest) and may insert it at
    # the same moment: the loser's unique-key error is retried, and then finds the row and links to it
    # (MLflow's log_inputs reuses an existing dataset and input, so a repeat writes nothing twice). So the source
    # a dataset shows is the first logger's path: the same bytes by the digest; this run's copy is its artifact.
    retry_conflicts(lambda: client.log_inputs(run_id, datasets=[entry]), f"dataset input {name!r}")
    client.log_artifact(run_id, ref.path, artifact_path=artifact_path)
    lineage = Path(ref.path).with_name(Path(ref.path).name + ".lineage.json")
    if lineage.exists():
        client.log_artifact(run_id, str(lineage), artifact_path=artifact_path)


def log_artifact(cfg: TrackingConfig, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """Upload a file or a directory to a run's artifacts."""
    client = client_for(cfg)
    if Path(path).is_dir():
        client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics decide a round's results (recorded for `selftrain reproduce`)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "accelerate"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def round_input(
    config: CampaignConfig, ctx: RoundContext, policy: ModelRef, validation: DatasetRef, **inputs: object
) -> dict[str, object]:
    """Everything `selftrain reproduce` needs to re-run a round without its local folder: the resolved
    config, the input policy, the validation set and where its file was logged on the campaign run, the
    base's content hash, the seeds, the library versions and the round flow's other `inputs` (the policy's
    MLflow adapter URI as `policy_source`, None for the base, what the campaign carried into the round, and
    where the earlier rounds' judged and selected rows it read were logged, from `logged_sources`)."""
    from tasks.base_model import fingerprint  # loads the model stack; only rounds need it

    return {
        "round": ctx.round,
        "config": config,
        "policy": policy,
        "validation": validation,
        "validation_source": f"runs:/{ctx.parent_run_id}/data/{Path(validation.path).name}",
        # The bytes of the base directory or of the hub snapshot (`tasks.base_model.fingerprint`).
        "base_fingerprint": fingerprint(policy.base) if policy.source == "hub" or Path(policy.base).is_dir() else None,
        "seeds": {"campaign": config.seed, "round": ctx.seed},
        "versions": library_versions(),
        **inputs,
    }


def logged_sources(refs: tuple[DatasetRef, ...], run_ids: tuple[str, ...]) -> list[dict[str, object]] | None:
    """Where each of an earlier round's record files was logged (`log_dataset` puts it under `data/` of the
    round's run), with its content hash and row count: what reproduce downloads and checks instead of the
    local paths, which may be gone. None when the runs are not known for every file (then reproduce refuses
    rather than read the original folder)."""
    if len(refs) != len(run_ids):
        return None
    return [
        {"run_id": run_id, "path": f"data/{Path(ref.path).name}", "sha256": ref.sha256, "rows": ref.rows}
        for ref, run_id in zip(refs, run_ids, strict=True)
    ]


def _json_default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def end_run(cfg: TrackingConfig, run_id: str, status: str = "FINISHED") -> None:
    """Close a run as FINISHED, FAILED or KILLED."""
    client_for(cfg).set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


def finish_run(cfg: TrackingConfig, run_id: str) -> None:
    """Close a run as FINISHED, deleting the `selftrain.failure` tag an earlier, interrupted or crashed
    attempt left on it (the count of attempts stays in `selftrain.resumed`)."""
    client = client_for(cfg)
    if "selftrain.failure" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, "selftrain.failure")
    end_run(cfg, run_id)


class RoundContext(BaseModel):
    """One round's identity, built once by the round flow and passed to every step: the round index, its
    seed (`tasks.layout.round_seed`), its folder, the round's MLflow run and the campaign's (parent) run.

    The campaign's own steps (the starting policy as round 0, the report) use one with `round=0`, the
    campaign run as `run_id` and no parent. Metrics are logged at step `round`.
    """

    model_config = ConfigDict(frozen=True)

    tracking: TrackingConfig
    round: int
    seed: int
    folder: str
    run_id: str
    parent_run_id: str | None = None
    # Where the run's artifacts keep the files of `folder`: the campaign run holds several rounds' scored sets, whose
    # files share names, under `data/round-NN/` (flows.campaign.campaign_context); a round run under `data/`.
    data_dir: str = "data"

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log metrics at this round on the round run and, for the campaign's curves, on the parent."""
        runs = [self.run_id] + ([self.parent_run_id] if self.parent_run_id else [])
        log_metrics(self.tracking, runs, metrics, self.round)

    def log_dataset(self, ref: DatasetRef, name: str, context: str) -> None:
        """Record a dataset input and its file on the round run: a file of the context's folder under
        `data_dir`, any other under `data/`."""
        inside = Path(ref.path).parent == Path(self.folder)
        log_dataset(self.tracking, self.run_id, ref, name, context, self.data_dir if inside else "data")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or directory to the round run."""
        log_artifact(self.tracking, self.run_id, path, artifact_path)

    def log_json(self, path: str | Path, data: Mapping[str, object]) -> None:
        """Write `data` (pydantic models allowed) as JSON to `path` and upload it to the run's artifact root."""
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
        log_artifact(self.tracking, self.run_id, path)
