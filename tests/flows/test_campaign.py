"""A whole tiny campaign through the real CLI, Prefect and an MLflow SQLite store, read back as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]
SELFTRAIN = str(Path(sys.executable).parent / "selftrain")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> dict:
    """Run `selftrain run configs/tiny.yaml` once; hand its output folder and console text to the tests."""
    root = tmp_path_factory.mktemp("tiny-campaign")
    proc = subprocess.run(
        [SELFTRAIN, "run", "configs/tiny.yaml", f"tracking.output_dir={root / 'runs'}"],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    uri = f"sqlite:///{root / 'runs' / 'mlflow.db'}"
    return {
        "root": root,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "client": MlflowClient(tracking_uri=uri),
        "env": cli_env,
    }


def _runs(campaign: dict) -> tuple:
    client = campaign["client"]
    experiment = client.get_experiment_by_name("selftrain-tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("selftrain.kind") == "campaign"]
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId")), key=lambda r: int(r.data.params["round"])
    )
    return parents, children


def test_console_shows_table_and_where_to_look(campaign: dict) -> None:
    out = campaign["stdout"]
    _, children = _runs(campaign)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["round", "validation"])
    assert "promoted" in lines[header] and "test [95% CI]" in lines[header]
    table = {int(line.split()[0]): line for line in lines[header + 1 : header + 5]}
    assert sorted(table) == [0, 1, 2, 3]
    for index, line in table.items():
        cells = line.split()
        assert cells[1] != "-" and cells[2].startswith("[")  # validation with its interval, every round
        promoted = index == 0 or children[index - 1].data.tags["selftrain.promoted"] == "true"
        assert cells[4] == ("start" if index == 0 else "yes" if promoted else "no")
        assert (cells[5] != "-") == promoted  # test only for the starting and the promoted policies
    claim = lines[header + 5]
    assert claim.startswith("test, start -> final:") and "McNemar p=" in claim
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    logs = campaign["stderr"]  # Prefect's console log handler writes to stderr
    assert "generate:" in logs and "samples/s" in logs  # progress with counts and rates
    assert "train: step" in logs and "steps/s" in logs


def test_mlflow_holds_one_parent_and_three_finished_rounds(campaign: dict) -> None:
    parents, children = _runs(campaign)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["generate.k"] == "4"
    assert parent.data.tags["mlflow.source.git.commit"]
    assert parent.data.tags["prefect.flow_run_id"]
    for index, child in enumerate(children, start=1):
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["round"] == str(index)
        assert child.data.tags["prefect.flow_run_id"] != parent.data.tags["prefect.flow_run_id"]
        for key in ("generate/samples", "judge/accept_rate", "select/rows", "train/loss", "val/accuracy", "val/ci_low"):
            history = campaign["client"].get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == [index], key
        assert child.data.tags["selftrain.gate"].startswith(("promoted: ", "refused: "))
        assert child.data.metrics["gate/promoted"] == float(child.data.tags["selftrain.promoted"] == "true")


def test_rounds_log_datasets_artifacts_and_lineage(campaign: dict) -> None:
    client = campaign["client"]
    _, children = _runs(campaign)
    for child in children:
        contexts = {
            next(t.value for t in d.tags if t.key == "mlflow.data.context") for d in child.inputs.dataset_inputs
        }
        assert contexts >= {"prompts", "generated", "judged", "selected", "evaluation"}
        data = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "data")}
        assert {"generated.jsonl", "judged.jsonl", "selected.jsonl", "generated.jsonl.lineage.json"} <= data
        adapter = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "adapter")}
        assert {"adapter_model.safetensors", "adapter_config.json", "lineage.json"} <= adapter
        local = Path(client.download_artifacts(child.info.run_id, "adapter/lineage.json"))
        lineage = json.loads(local.read_text())
        assert lineage["data"]["sha256"] and lineage["parent"]["base"]


def test_validation_accuracy_improves_over_round_zero(campaign: dict) -> None:
    parents, _ = _runs(campaign)
    history = campaign["client"].get_metric_history(parents[0].info.run_id, "val/accuracy")
    by_round = {m.step: m.value for m in history}
    print("validation accuracy by round:", by_round)
    assert sorted(by_round) == [0, 1, 2, 3]
    assert max(by_round.values()) > by_round[0]
    artifacts = {a.path for a in campaign["client"].list_artifacts(parents[0].info.run_id)}
    assert {"accuracy.png", "config.json"} <= artifacts


def test_campaign_run_reports_test_for_start_and_promoted_rounds_and_the_final_claim(campaign: dict) -> None:
    client = campaign["client"]
    parents, children = _runs(campaign)
    parent = parents[0]
    promoted = [0] + [i for i, c in enumerate(children, start=1) if c.data.tags["selftrain.promoted"] == "true"]
    for key in ("test/accuracy", "test/ci_low", "test/ci_high", "test/ood_accuracy"):
        assert [m.step for m in client.get_metric_history(parent.info.run_id, key)] == promoted, key
    test = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "test/accuracy")}
    low = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "test/ci_low")}
    assert all(low[step] <= test[step] for step in promoted)
    final = parent.data.metrics
    assert {"final/test_gain", "final/p_value"} <= set(final)
    assert 0.0 <= final["final/p_value"] <= 1.0
    # The final policy is the champion: the promoted round with the best validation accuracy (ties: the later).
    val = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "val/accuracy")}
    champion = max(promoted, key=lambda step: (val[step], step))
    assert final["final/test_gain"] == pytest.approx(test[champion] - test[0])
    assert parent.data.tags["selftrain.final_claim"].startswith("test, start -> final:")


def test_prefect_shows_campaign_and_rounds_completed(campaign: dict) -> None:
    # The temporary Prefect server died with the CLI; a new one on the same PREFECT_HOME reads its database.
    script = textwrap.dedent(
        """
        import json
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
            print(json.dumps([[r.name, r.state.type.value if r.state else None] for r in runs]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=campaign["env"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs["tiny"] == "COMPLETED"
    for index in (1, 2, 3):
        assert runs[f"tiny-round-{index}"] == "COMPLETED"
