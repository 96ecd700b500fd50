"""The served campaign deployment on the real stack: typed, documented parameters; runs started through the
Prefect API use exactly their parameters; two campaigns at once on the same servers keep apart; MLflow on
PostgreSQL holds their rounds."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from mlflow import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_deployment_form_documents_every_field(served: dict) -> None:
    deployment = served["deployment"]
    schema = deployment.parameter_openapi_schema
    assert schema["properties"]["config"]["$ref"] == "#/definitions/CampaignConfig"
    undocumented = [
        f"{name}.{field}"
        for name, definition in schema["definitions"].items()
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert not undocumented, undocumented
    assert schema["definitions"]["TrainConfig"]["properties"]["learning_rate"]["description"]
    defaults = deployment.parameters["config"]
    assert (defaults["name"], defaults["rounds"], defaults["generate"]["k"]) == ("tiny", 3, 4)
    assert Path(defaults["tracking"]["output_dir"]).is_absolute()


@pytest.fixture(scope="module")
def two_runs(served: dict, campaigns_started: dict, flow_runs_finished) -> dict:
    """The two campaign runs started at once through the Prefect API (conftest), waited for."""
    ids = [run.id for run in campaigns_started["runs"].values()]
    finished = flow_runs_finished(served["stack"]["prefect_api"], ids)
    return {
        "sent": campaigns_started["sent"],
        "changes": campaigns_started["changes"],
        "runs": dict(zip(campaigns_started["runs"], finished, strict=True)),
        "served": served,
    }


def _parent_and_children(client: MlflowClient, flow_run_id: str) -> tuple:
    experiment = client.get_experiment_by_name("selftrain-tiny")
    parents = client.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    parents = [run for run in parents if run.data.tags.get("selftrain.kind") == "campaign"]
    assert len(parents) == 1, [run.info.run_id for run in parents]
    parent = parents[0]
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, children


def test_runs_complete_with_exactly_their_parameters(two_runs: dict) -> None:
    client = MlflowClient(tracking_uri=two_runs["served"]["stack"]["mlflow"])
    for key, run in two_runs["runs"].items():
        assert run.state.is_completed(), (key, run.state, two_runs["served"]["log"].read_text()[-3000:])
        assert run.parameters["config"] == two_runs["sent"][key]  # what Prefect delivered
        parent, children = _parent_and_children(client, str(run.id))
        params = parent.data.params  # what the campaign recorded as its resolved config
        for dotted, value in two_runs["changes"][key].items():
            assert params[dotted] == str(value), dotted
        assert parent.info.status == "FINISHED"
        assert len(children) == 1
        child = children[0]
        assert child.info.status == "FINISHED" and child.data.params["round"] == "1"
        train_size = two_runs["sent"][key]["prompts"]["train_size"]
        assert child.data.metrics["generate/samples"] == train_size * two_runs["changes"][key]["generate.k"]
    log = two_runs["served"]["log"].read_text()  # served runs print what `selftrain run` prints
    assert "generate:" in log and "samples/s" in log and "train: step" in log
    assert "FutureWarning" not in log and "it/s]" not in log  # no deprecation noise, no progress bars


def test_two_campaigns_at_once_do_not_mix(two_runs: dict) -> None:
    client = MlflowClient(tracking_uri=two_runs["served"]["stack"]["mlflow"])
    found = {key: _parent_and_children(client, str(run.id)) for key, run in two_runs["runs"].items()}
    (parent_a, children_a), (parent_b, children_b) = found["a"], found["b"]
    assert parent_a.info.run_id != parent_b.info.run_id
    dir_a, dir_b = Path(parent_a.data.tags["selftrain.dir"]), Path(parent_b.data.tags["selftrain.dir"])
    assert dir_a != dir_b and dir_a.parent == dir_b.parent == two_runs["served"]["output_dir"].resolve()
    for parent, children, workdir in ((parent_a, children_a, dir_a), (parent_b, children_b, dir_b)):
        assert [child.data.tags["mlflow.parentRunId"] for child in children] == [parent.info.run_id]
        assert (workdir / "round-01").is_dir()
        assert os.path.commonpath([workdir, Path(parent.data.tags["selftrain.dir"])]) == str(workdir)
    config_a = (dir_a / "config.json").read_text()
    assert '"k": 2' in config_a and '"k": 3' in (dir_b / "config.json").read_text()


def test_mlflow_on_postgresql_holds_the_rounds_and_served_artifacts(two_runs: dict) -> None:
    stack = two_runs["served"]["stack"]
    client = MlflowClient(tracking_uri=stack["mlflow"])
    run_ids = []
    for run in two_runs["runs"].values():
        parent, children = _parent_and_children(client, str(run.id))
        run_ids += [parent.info.run_id, *(child.info.run_id for child in children)]
        adapter = client.list_artifacts(children[0].info.run_id, "adapter")
        assert any(item.path.endswith("adapter_config.json") for item in adapter)
    # The backend store really is PostgreSQL. Its URI is SQLAlchemy's, naming the driver; libpq takes the bare one.
    with psycopg.connect(stack["mlflow_db"].replace("postgresql+psycopg://", "postgresql://", 1)) as db:
        rows = db.execute("SELECT run_uuid, status FROM runs WHERE run_uuid = ANY(%s)", (run_ids,)).fetchall()
    assert sorted(rows) == sorted((run_id, "FINISHED") for run_id in run_ids)
    stored = list((stack["state"] / "mlartifacts").rglob("adapter_config.json"))
    assert len(stored) >= 2  # the artifact store behind --serve-artifacts
