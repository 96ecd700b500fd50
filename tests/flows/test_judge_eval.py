"""`selftrain judge-eval` on the tiny model and a small labelled file: table, results, ROC PNG, MLflow run, and a
completed `selftrain-judge-eval` flow run in Prefect."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows import judge_eval
from tasks.arithmetic import sample_problems


def _labelled(path: Path) -> Path:
    rows = []
    for p in sample_problems(16, split="train", seed=5):
        wrong = p["solution"].replace(f"is {p['answer']}.", f"is {int(p['answer']) + 1}.")
        rows += [
            {"prompt": p["prompt"], "response": p["solution"], "correct": True},
            {"prompt": p["prompt"], "response": wrong, "correct": False},
        ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _flow_run_states(flow_name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return [run.state.type.value for run in runs if run.state is not None]


def _ns(args: list[str], **options: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    judge_eval.configure(parser)
    extra = [item for key, value in options.items() if value for item in (f"--{key}", value)]
    return parser.parse_args(args + extra)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_judge_eval_reports_every_judge(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    args = [
        "judge-eval",
        "model.source=local",
        f"model.name={tiny_dir}",
        f"tracking.output_dir={tmp_path / 'runs'}",
        "judge.batch_size=16",
    ]
    code = judge_eval.main(_ns(args, labelled=str(_labelled(tmp_path / "labelled.jsonl")), out=str(out)))
    assert code == 0
    table = capsys.readouterr().out
    for name in judge_eval.JUDGES:
        assert name in table
    summary = json.loads((out / "results.json").read_text())
    assert summary["split"] == {"bank": 8, "panel": 8, "calibration": 4, "dev": 4, "test": 16}
    results = summary["results"]
    assert list(results) == [*judge_eval.JUDGES, "verifier-oracle", "keep-all"]
    for name in judge_eval.JUDGES:
        figures = results[name]
        assert figures["auroc_low"] <= figures["auroc"] <= figures["auroc_high"]
        assert figures["forward_passes_per_sample"] > 0 and figures["seconds_per_sample"] > 0
        assert name == "pointwise" or 0.0 <= figures["vs_pointwise_p"] <= 1.0
    assert results["verifier-oracle"]["auroc"] == 1.0 and results["keep-all"]["auroc"] == 0.5
    assert "| verifier-oracle | 1.000 | 1.000 | 1.000 | 1.000 |" in (out / "results.md").read_text()
    assert (
        summary["results"]["meta-ranking-swap"]["forward_passes_per_sample"]
        > (summary["results"]["meta-ranking"]["forward_passes_per_sample"])
    )
    assert (out / "roc.png").stat().st_size > 1000
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-judge-eval")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["selftrain.kind"] == "judge-eval"
    assert "judge_eval/pointwise/auroc" in run.data.metrics and "judge_eval/meta-ranking/f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts >= {"roc.png", "results.json", "results.md", "labelled.jsonl"}
    assert _flow_run_states("selftrain-judge-eval") == ["COMPLETED"]  # visible in the Prefect UI


def test_judge_eval_rejects_an_unknown_judge(capsys: pytest.CaptureFixture) -> None:
    assert judge_eval.main(_ns(["judge-eval"], judges="pointwise,oracle")) == 2
    assert "--judges: unknown judge 'oracle'" in capsys.readouterr().err


@pytest.mark.slow  # MLflow run and CLI path, ~10 s
@pytest.mark.usefixtures("prefect_server")
def test_judge_eval_accepts_the_reward_model(tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rows = []
    for a, b in [(i % 7 + 1, i % 5 + 2) for i in range(16)]:
        prompt = f"What is {a} + {b}? ({a}{b})"
        rows += [
            {"prompt": prompt, "response": f" The answer is {a + b}.", "correct": True},
            {"prompt": prompt, "response": f" The answer is {a + b + 1}.", "correct": False},
        ]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parser = argparse.ArgumentParser()
    judge_eval.configure(parser)
    out = tmp_path / "report"
    args = ["judge-eval", "model.source=local", f"model.name={tiny_dir}", f"tracking.output_dir={tmp_path / 'runs'}"]
    ns = parser.parse_args([*args, "--judges", "reward-model", "--labelled", str(labelled), "--out", str(out)])
    assert judge_eval.main(ns) == 0
    assert "reward-model" in capsys.readouterr().out
    figures = json.loads((out / "results.json").read_text())["results"]["reward-model"]
    assert 0.0 <= figures["auroc"] <= 1.0 and figures["forward_passes_per_sample"] > 0
    assert (out / "reward-model" / "lineage.json").exists()
    bad = parser.parse_args([*args, "--judges", "reward", "--labelled", str(labelled), "--out", str(out)])
    assert judge_eval.main(bad) == 2
    capsys.readouterr()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a", "response": "b"}\n')
    bad_file = parser.parse_args([*args, "--judges", "reward-model", "--labelled", str(broken), "--out", str(out)])
    assert judge_eval.main(bad_file) == 2
    assert capsys.readouterr().err == f"selftrain: error: --labelled: {broken}:1: field 'correct' must be a bool\n"
