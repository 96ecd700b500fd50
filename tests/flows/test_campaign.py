"""A whole tiny campaign through the real CLI, Prefect and an MLflow SQLite store, read back as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> dict:
    """Run `selftrain run configs/tiny.yaml` once; hand its output folder and console text to the tests."""
    root = tmp_path_factory.mktemp("tiny-campaign")
    bench = root / "bench.jsonl"  # an extra set: sums past tiny's operands (1-9), which training never draws
    bench.write_text(
        "".join(json.dumps({"prompt": f"What is {a} plus {a + 1}?", "answer": 2 * a + 1}) + "\n" for a in range(10, 22))
    )
    proc = run_cli(
        [
            "run",
            "configs/tiny.yaml",
            f"tracking.output_dir={root / 'runs'}",
            # The few-shot baseline (issue 13): scored once; the rounds never sample behind the examples.
            "prompts.few_shot=2",
            "generate.few_shot_rounds=0",
            "evaluate.few_shot_baseline=true",
            # Test and OOD sets of 32 and 16 (tiny.yaml: 128 and 64): the checks below read which rounds were
            # scored on test and how the claim is computed, never how large the sets are.
            "prompts.test_size=32",
            "prompts.ood_size=16",
            f"evaluate.extra_sets=[{{name: bench, path: {bench}}}]",
        ],
        cli_env,
    )
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
    assert claim.startswith("test, start -> final:") and "(exact McNemar by problem p=" in claim
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
    # The tags mlflow.start_run sets: the UI's User and Source columns.
    assert parent.data.tags["mlflow.user"] and parent.data.tags["mlflow.source.type"] == "LOCAL"
    assert parent.data.tags["mlflow.source.name"]
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
    # The claim's two sides are both in MLflow, each round's scored files apart (they share names).
    run_id, root = parent.info.run_id, campaign["root"] / "mlflow-claim"
    root.mkdir(exist_ok=True)
    for step in sorted({0, champion}):
        logged = Path(client.download_artifacts(run_id, f"data/round-{step:02d}/test-evaluated.jsonl", str(root)))
        local = next(campaign["root"].glob(f"runs/*/round-{step:02d}/test-evaluated.jsonl"))
        assert logged.read_bytes() == local.read_bytes()


def test_final_policy_is_compared_with_the_base_behind_its_few_shot_examples(campaign: dict) -> None:
    client = campaign["client"]
    parents, children = _runs(campaign)
    parent = parents[0].info.run_id
    shot = client.get_metric_history(parent, "test-few-shot/accuracy")
    assert [m.step for m in shot] == [0]  # scored once, for the starting policy
    final = client.get_run(parent).data.metrics
    assert final["final/vs_few_shot/start_test_accuracy"] == pytest.approx(shot[0].value)
    assert final["final/vs_few_shot/test_accuracy"] == pytest.approx(final["final/test_accuracy"])
    assert final["final/vs_few_shot/test_gain"] == pytest.approx(final["final/test_accuracy"] - shot[0].value)
    assert 0.0 <= final["final/vs_few_shot/p_value"] <= 1.0
    assert 0.0 <= final["final/vs_few_shot/ood_p_value"] <= 1.0  # the OOD slice is paired too
    line = "against the starting policy behind 2 worked examples (plain working), test, start -> final:"
    assert line in campaign["stdout"]
    # And per kind of problem (the built-in task's operations), paired on the same items of each kind.
    for split in ("test", "ood"):
        for op in ("add", "sub"):
            kind = f"final/vs_few_shot/by_kind/{split}/{op}"
            assert 0.0 <= final[f"{kind}/p_value"] <= final[f"{kind}/p_holm"] <= 1.0  # Holm over add and sub
            assert final[f"{kind}/start_accuracy"] >= 0.0 and final[f"{kind}/accuracy"] >= 0.0
    add = final["final/vs_few_shot/by_kind/test/add/accuracy"]
    assert final["final/by_kind/test/add/accuracy"] == pytest.approx(add)  # the same final policy either way
    assert "by kind, right of n, few-shot bar -> final: test add " in campaign["stdout"]


@pytest.fixture(scope="module")
def prefect_state(campaign: dict) -> dict:
    """The campaign's flow runs and artifacts, read through the Prefect client: the temporary Prefect server died
    with the CLI; a new one on the same PREFECT_HOME reads its database (one subprocess for both)."""
    script = textwrap.dedent(
        """
        import json
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="tiny-")))
        print(json.dumps({
            "runs": [[r.name, r.state.type.value if r.state else None, str(r.id)] for r in runs],
            "artifacts": [[a.key, a.type, a.data, str(a.flow_run_id), str(a.created), a.description] for a in found],
        }))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=campaign["env"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_prefect_shows_campaign_and_rounds_completed(campaign: dict, prefect_state: dict) -> None:
    # This campaign's flow runs, as its MLflow runs name them (others' tiny campaigns share the Prefect home).
    parents, children = _runs(campaign)
    states = {run_id: (name, state) for name, state, run_id in prefect_state["runs"]}
    assert states[parents[0].data.tags["prefect.flow_run_id"]] == ("tiny", "COMPLETED")
    rounds = sorted(states[child.data.tags["prefect.flow_run_id"]] for child in children)
    assert rounds == [(f"tiny-round-{index}", "COMPLETED") for index in (1, 2, 3)]


def test_prefect_artifacts_match_mlflow(campaign: dict, prefect_state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round's table artifact (on the round's flow run) holds the round run's MLflow metrics, and test where
    the campaign scored the round's policy; the gate, MLflow note, summary and stage progress are there too; the
    round run holds its judged samples as an MLflow table."""

    # Each MLflow run names its Prefect flow run (other tests' tiny campaigns share this Prefect home and run names).
    flow_runs = {run_id: name for name, _, run_id in prefect_state["runs"]}
    parents, children = _runs(campaign)
    own = {run.data.tags["prefect.flow_run_id"] for run in [*parents, *children]}
    latest: dict[str, tuple] = {}
    for key, kind, data, flow_run_id, _created, description in sorted(prefect_state["artifacts"], key=lambda a: a[4]):
        if flow_run_id in own:
            latest[key] = (kind, data, flow_run_id, description)  # a key given again is a new version: the last counts
    client = campaign["client"]
    for child in children:
        index = int(child.data.params["round"])
        kind, data, flow_run_id, _ = latest[f"tiny-round-{index}"]
        assert (kind, flow_run_id) == ("table", child.data.tags["prefect.flow_run_id"])
        assert flow_runs[flow_run_id] == f"tiny-round-{index}"
        rows = {row["metric"]: row["value"] for row in json.loads(data)}
        assert {"val/accuracy", "val/ci_low", "val/ci_high", "select/rows", "gate/promoted"} <= set(rows)
        promoted = child.data.tags["selftrain.promoted"] == "true"
        assert ("test/accuracy" in rows) == promoted  # test only where the campaign scored the policy
        for metric, value in rows.items():
            if metric.startswith("test/"):  # logged on the campaign run at the round's step
                history = client.get_metric_history(parents[0].info.run_id, metric)
                assert value == pytest.approx(next(m.value for m in history if m.step == index), abs=5e-5)
            else:
                assert value == pytest.approx(child.data.metrics[metric], abs=5e-5), metric  # 4 decimals
        gate = latest[f"tiny-round-{index}-gate"][1]
        assert gate.startswith(f"# Round {index}: {'promoted' if promoted else 'not promoted'}")
        assert child.data.tags["selftrain.gate"] in gate
        assert child.info.run_id in latest[f"tiny-round-{index}-mlflow"][1]  # a SQLite store: id and command
        for stage in ("generate", "train", "evaluate"):
            assert latest[f"tiny-round-{index}-{stage}-progress"][:2] == ("progress", 100.0)
        # load_table searches runs through the fluent API, which reads MLFLOW_TRACKING_URI: the variable (undone after
        # the test), not mlflow.set_tracking_uri, whose process-wide URI would outlive the test and redirect later ones.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{campaign['root'] / 'runs' / 'mlflow.db'}")
        samples = client.load_table(child.info.experiment_id, "samples/judged.json", [child.info.run_id])
        assert list(samples.columns) == ["id", "sample", "prompt", "response", "score", "kept", "reason"]
        assert len(samples) == child.data.metrics["generate/samples"]
        assert int(samples["kept"].sum()) == child.data.metrics["select/rows"] - child.data.metrics["select/gold_rows"]
    summary = json.loads(latest["tiny-summary"][1])
    assert [row["round"] for row in summary] == [0, 1, 2, 3]
    assert summary[0]["mlflow run"] == parents[0].info.run_id
    assert [row["promoted"] for row in summary[1:]] == [
        "yes" if c.data.tags["selftrain.promoted"] == "true" else "no" for c in children
    ]
    assert latest["tiny-summary"][2] == parents[0].data.tags["prefect.flow_run_id"]
    assert flow_runs[latest["tiny-summary"][2]] == "tiny"
    claim = parents[0].data.tags["selftrain.final_claim"]  # the description carries both claims
    shot_claim = parents[0].data.tags["selftrain.final_claim.vs_few_shot"]
    assert f"Claim: {claim}. Against the starting policy behind 2 worked examples" in latest["tiny-summary"][3]
    assert f"{shot_claim}. By kind, right of n, few-shot bar -> final: test add " in latest["tiny-summary"][3]
    kind, data, flow_run_id, description = latest["tiny-by-kind"]  # the same claim per kind, as a table
    assert (kind, flow_run_id) == ("table", latest["tiny-summary"][2])
    assert "against the starting policy behind 2 worked examples" in description
    metrics = parents[0].data.metrics
    for row in json.loads(data):
        split = "ood" if row["split"] == "OOD" else row["split"]
        prefix = f"final/vs_few_shot/by_kind/{split}/{row['kind']}"
        assert row["start right"] / row["items"] == pytest.approx(metrics[f"{prefix}/start_accuracy"])
        assert row["final right"] / row["items"] == pytest.approx(metrics[f"{prefix}/accuracy"])
        assert row["p (exact McNemar, by problem)"] == pytest.approx(metrics[f"{prefix}/p_value"], rel=1e-3)
        assert row["p, Holm over the kinds"] == pytest.approx(metrics[f"{prefix}/p_holm"], rel=1e-3)
    assert {row["kind"] for row in json.loads(data)} == {"add", "sub"}


def test_an_extra_set_is_scored_for_both_policies_and_compared_paired(campaign: dict) -> None:
    # evaluate.extra_sets: the starting and the final policy on the set's 12 items, with intervals and an exact
    # McNemar test on the same items, printed and logged as final/extra/<name>/* on the campaign run.
    (line,) = [line for line in campaign["stdout"].splitlines() if line.startswith("extra set ")]
    assert line.startswith("extra set 'bench', start -> final: ") and "on 12 items" in line
    assert "(exact McNemar p=" in line
    (parent,), _ = _runs(campaign)
    metrics = parent.data.metrics
    for name in ("accuracy", "start_accuracy", "gain", "p_value", "ci_low", "ci_high", "start_ci_low", "problems"):
        assert f"final/extra/bench/{name}" in metrics, name
    assert metrics["final/extra/bench/problems"] == 12.0
    assert 0.0 <= metrics["final/extra/bench/p_value"] <= 1.0
    assert metrics["final/extra/bench/gain"] == pytest.approx(
        metrics["final/extra/bench/accuracy"] - metrics["final/extra/bench/start_accuracy"]
    )
    assert "final/extra/bench/ood_accuracy" not in metrics and "final/test_accuracy" in metrics
    assert parent.data.tags["selftrain.final_claim.extra.bench"].startswith("bench, start -> final: ")
