"""Prefect artifacts of a campaign: each round's table, gate decision and MLflow link, the summary, stage progress.

A run started from the Prefect UI or a schedule shows its results where a Prefect user looks: the flow run's
Artifacts tab. The builders at the top are pure (keys, rows, markdown, links) and tested by hand; the creators at
the bottom call `prefect.artifacts` and never fail a round: an artifact the API refuses costs one warning line.

Keys follow Prefect's rule (lowercase letters, digits and dashes; `artifact_key`): `<name>-round-<n>` (the round's
table), `<name>-round-<n>-gate`, `<name>-round-<n>-mlflow`, `<name>-summary`, `<name>-by-kind`, `<name>-mlflow` and
`<flow run name>-<stage>-progress`. A key given again makes a new version; the UI shows the latest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from uuid import UUID

from tasks.stats import accuracy_cell, interval_text

# The round table: MLflow metric key and what the row is called in the UI, in table order. Test rows exist only
# for rounds whose policy was scored on test (the starting policy and the promoted ones).
ROUND_METRICS = (
    ("val/accuracy", "validation accuracy"),
    ("val/ci_low", "validation 95% CI low"),
    ("val/ci_high", "validation 95% CI high"),
    ("test/accuracy", "test accuracy"),
    ("test/ci_low", "test 95% CI low"),
    ("test/ci_high", "test 95% CI high"),
    ("select/rows", "kept rows"),
    ("train/loss", "train loss"),
    ("gate/promoted", "promoted"),
)
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
PROGRESS_STEP = 10.0  # a progress artifact moves at least this many percent per update ...
PROGRESS_SECONDS = 5.0  # ... or this long after the last one


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key from `parts`: lowercase, every run of other characters one dash, joined by dashes.

    >>> artifact_key("My_Camp", "round", 3)
    'my-camp-round-3'
    """
    return re.sub(r"[^a-z0-9]+", "-", "-".join(str(part) for part in parts).lower()).strip("-")


def round_rows(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """The round table: one `{"metric", "name", "value"}` row per `ROUND_METRICS` key present in `metrics`, the
    value rounded to 4 decimals (the MLflow run holds it exactly).

    Args:
        metrics: MLflow metric key -> latest value (the round run's, plus `test/*` when the policy was tested).
    """
    return [
        {"metric": key, "name": name, "value": round(metrics[key], 4)} for key, name in ROUND_METRICS if key in metrics
    ]


def gate_markdown(
    round_index: int,
    promoted: bool,
    reason: str,
    accuracy: float | None,
    interval: tuple[float, float] | None = None,
) -> str:
    """The gate's decision on a round as markdown: the verdict as a heading, the reason, the validation accuracy
    (with its 95% interval when given)."""
    verdict = "promoted" if promoted else "not promoted"
    measured = f"{accuracy:.3f}" if accuracy is not None else "not measured (training was skipped)"
    if accuracy is not None and interval is not None:
        measured += f" {interval_text(interval)} (95% interval)"
    return f"# Round {round_index}: {verdict}\n\n**Gate:** {reason}\n\n**Validation accuracy:** {measured}\n"


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of a run when the tracking URI is an MLflow server (http or https), else None."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_run_markdown(tracking_uri: str, experiment_id: str, run_id: str, title: str) -> str:
    """Where to see a run recorded in a local store (no server to link to): its id and the command to start one."""
    return (
        f"# {title}\n\nMLflow run `{run_id}` (experiment {experiment_id}) is in a local store. See it with\n\n"
        f"```\nmlflow ui --backend-store-uri {tracking_uri}\n```\n\n"
        f"then open {LOCAL_MLFLOW_UI}/#/experiments/{experiment_id}/runs/{run_id}\n"
    )


def summary_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The campaign's summary table: the cells `selftrain run` prints (`tasks.report.render_table`), one dict per
    round, plus the round's MLflow run id; the OOD column only when some round has an OOD accuracy."""
    has_ood = any(r.get("ood_accuracy") is not None for r in rows)
    out = []
    for r in rows:
        cells: dict[str, Any] = {
            "round": r["round"],
            "validation [95% CI]": accuracy_cell(r, "") if r.get("accuracy") is not None else "- (not trained)",
            "promoted": "start" if r["round"] == 0 else ("yes" if r.get("promoted") else "no"),
            "test [95% CI]": accuracy_cell(r, "test_"),
        }
        if has_ood:
            cells["OOD test [95% CI]"] = accuracy_cell(r, "ood_")
        out.append(cells | {"mlflow run": r.get("run_id", "")})
    return out


# ---- creators: the Prefect API, never fatal ----


def _warn(line: str) -> None:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().warning(line)
    except MissingContextError:
        print(line, flush=True)


def guarded(what: str, action: Callable[[], object], failed: str = "not created") -> bool:
    """Run `action` (build and send an artifact, or look one up); on any error log `what`, `failed` and the
    reason as one warning line.

    Returns:
        Whether the action succeeded.
    """
    try:
        action()
    except Exception as error:  # noqa: BLE001  (an artifact is never worth a failed round)
        _warn(f"prefect artifact {what}: {failed} ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
        return False
    return True


def publish_table(key: str, table: list[dict[str, Any]], description: str, flow_run_id: UUID | None = None) -> bool:
    """Create a table artifact (attached to `flow_run_id`, else to the current run); False if refused."""
    from prefect.artifacts import TableArtifact

    return guarded(
        key, lambda: TableArtifact(key=key, table=table, description=description, flow_run_id=flow_run_id).create()
    )


def publish_markdown(key: str, markdown: str, description: str, flow_run_id: UUID | None = None) -> bool:
    """Create a markdown artifact (attached to `flow_run_id`, else to the current run); False if refused."""
    from prefect.artifacts import MarkdownArtifact

    return guarded(
        key,
        lambda: MarkdownArtifact(key=key, markdown=markdown, description=description, flow_run_id=flow_run_id).create(),
    )


def publish_mlflow_run(
    key: str, tracking_uri: str, experiment_id: str, run_id: str, title: str, flow_run_id: UUID | None = None
) -> bool:
    """A link artifact to the run's MLflow UI page (an MLflow server), else a markdown note with the run id and
    the `mlflow ui` command (a local SQLite store)."""
    from prefect.artifacts import LinkArtifact

    url = mlflow_run_url(tracking_uri, experiment_id, run_id)
    if url is None:
        return publish_markdown(
            key, mlflow_run_markdown(tracking_uri, experiment_id, run_id, title), title, flow_run_id
        )
    return guarded(
        key,
        lambda: LinkArtifact(key=key, link=url, link_text=title, description=title, flow_run_id=flow_run_id).create(),
    )


class StageProgress:
    """A progress artifact for one stage of the current Prefect run, updated at most every `PROGRESS_STEP`
    percent or `PROGRESS_SECONDS` (and at 100%); nothing outside a run; after one refusal, silent."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.artifact_id: UUID | None = None
        self.percent, self.when = 0.0, 0.0
        self.off = False

    def update(self, done: int, total: int) -> None:
        """Report `done` of `total` units (throttled)."""
        if self.off or total <= 0:
            return
        percent, now = min(100.0, 100.0 * done / total), time.perf_counter()
        if self.artifact_id is not None and (
            percent < 100.0 and percent - self.percent < PROGRESS_STEP and now - self.when < PROGRESS_SECONDS
        ):
            return
        if self.artifact_id is not None and percent == self.percent:
            return
        self.percent, self.when = percent, now
        if not guarded(f"{self.stage} progress", lambda: self._send(percent)):
            self.off = True

    def _send(self, percent: float) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import MissingContextError, get_run_context
        from prefect.runtime import flow_run

        if self.artifact_id is None:
            try:
                get_run_context()
            except MissingContextError:  # tests and notebooks: no run to attach to
                self.off = True
                return
            key = artifact_key(flow_run.name or "selftrain", self.stage, "progress")
            made = create_progress_artifact(percent, key=key, description=f"{self.stage} progress")
            self.artifact_id = cast(UUID, made)  # the sync call of an async_dispatch pair returns the value
        else:
            update_progress_artifact(self.artifact_id, percent)


_stages: dict[tuple[object, str], StageProgress] = {}  # (task or flow run id, stage) -> its progress artifact


def stage_progress(stage: str) -> StageProgress:
    """The progress artifact of `stage` in the current task (or flow) run, made on first use."""
    from prefect.utilities.context import get_task_and_flow_run_ids

    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    run = task_run_id or flow_run_id
    if run is None:
        return StageProgress(stage)  # outside a run: makes no calls (`StageProgress._send`)
    if (run, stage) not in _stages:
        if len(_stages) > 256:  # a long-lived worker: forget finished runs' entries
            _stages.clear()
        _stages[(run, stage)] = StageProgress(stage)
    return _stages[(run, stage)]


def has_artifact(key: str, flow_run_id: UUID) -> bool:
    """Whether the flow run already holds an artifact under `key`; False when the API cannot say."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    found: list[object] = []
    where = ArtifactFilter(key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))

    def look() -> None:
        with get_client(sync_client=True) as client:
            found.extend(client.read_artifacts(artifact_filter=where, limit=1))

    return guarded(key, look, failed="not looked up, so it is made again") and bool(found)


def publish_round(
    name: str,
    round_index: int,
    metrics: Mapping[str, float],
    *,
    promoted: bool,
    reason: str,
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    flow_run_id: UUID | None,
    again: bool = False,
) -> None:
    """A round's artifacts on its flow run: the table of its metrics, the gate's decision, its MLflow run.

    `again`: the round finished before a resume; its flow run keeps the artifacts it had (the MLflow link is made
    last, so with it the others are there), and they are made only when missing, not as second versions."""
    key = artifact_key(name, "round", round_index)
    if again and flow_run_id is not None and has_artifact(f"{key}-mlflow", flow_run_id):
        return
    publish_table(key, round_rows(metrics), f"Round {round_index}: metrics of MLflow run {run_id}", flow_run_id)
    accuracy, low, high = (metrics.get(f"val/{name}") for name in ("accuracy", "ci_low", "ci_high"))
    interval = (low, high) if low is not None and high is not None else None
    gate = gate_markdown(round_index, promoted, reason, accuracy, interval)
    publish_markdown(f"{key}-gate", gate, "The promotion gate", flow_run_id)
    publish_mlflow_run(
        f"{key}-mlflow", tracking_uri, experiment_id, run_id, f"Round {round_index} in MLflow", flow_run_id
    )


def publish_campaign(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    claim: str | None,
    *,
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    kinds: Sequence[Mapping[str, Any]] = (),
    kinds_start: str = "the starting policy",
) -> None:
    """The campaign's artifacts on its flow run: the summary table (the claim as its description), the claim per
    kind of problem as a table (`kinds`, rows of `tasks.report.KindClaim.cells`: the final policy against
    `kinds_start`) when there is one, and its MLflow run."""
    description = f"{name}: validation decides, test reports" + (f". Claim: {claim}" if claim else "")
    publish_table(artifact_key(name, "summary"), summary_rows(rows), description)
    if kinds:
        about = f"{name}: the final policy against {kinds_start} per kind of problem, paired on each kind's items"
        publish_table(artifact_key(name, "by-kind"), [dict(row) for row in kinds], about)
    publish_mlflow_run(artifact_key(name, "mlflow"), tracking_uri, experiment_id, run_id, f"Campaign {name} in MLflow")
