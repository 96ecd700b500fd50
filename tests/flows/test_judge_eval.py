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
    # split by problem (the built-in task's canonical one), so a test problem's rewordings are never references
    assert summary["split"] == {"bank": 6, "panel": 6, "calibration": 4, "dev": 4, "test": 18, "test_problems": 6}
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
    assert capsys.readouterr().err == (
        f"selftrain: error: --labelled: {broken}, line 1: no 'correct' field; each row needs prompt, response and "
        "correct\n"
    )


def _one_line_error(capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], **options: str | None) -> str:
    """The error of a refused `selftrain judge-eval`: exit 2, one line on stderr, no runs folder."""
    runs = tmp_path / "runs"
    assert judge_eval.main(_ns(["configs/tiny.yaml", f"tracking.output_dir={runs}", *args], **options)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not runs.exists()
    return err


def _rows_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_labelled_set_the_judges_cannot_be_measured_on_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A directory: the reader's one line, not IsADirectoryError.
    err = _one_line_error(capsys, tmp_path, [], labelled=str(tmp_path), judges="pointwise")
    assert err == f"selftrain: error: --labelled: {tmp_path}: not a file (a directory); expected a JSONL file\n"
    # A missing file is a labelled set not found, not a reference bank.
    err = _one_line_error(capsys, tmp_path, [], labelled=str(tmp_path / "no.jsonl"), judges="pointwise")
    assert err == f"selftrain: error: --labelled: {tmp_path / 'no.jsonl'}: file not found\n"
    # 3 rows: the validation split (12.5% of 3 prompts) is empty, where "cannot calibrate a threshold on no scores".
    few = _rows_file(
        tmp_path / "few.jsonl", [{"prompt": f"p{i}", "response": "r", "correct": i != 1} for i in range(3)]
    )
    err = _one_line_error(capsys, tmp_path, [], labelled=str(few), judges="pointwise")
    assert err.startswith(
        f"selftrain: error: --labelled: {few}: its validation split holds no rows, and thresholds are calibrated on "
        "both labels there (3 rows over 3 problems, split by problem: 25% bank, 12.5% calibration, 12.5% validation"
    )
    # One label: a table of NaNs before.
    right = _rows_file(
        tmp_path / "right.jsonl", [{"prompt": f"p{i}", "response": "r", "correct": True} for i in range(60)]
    )
    err = _one_line_error(capsys, tmp_path, [], labelled=str(right), judges="pointwise")
    assert err == (
        f"selftrain: error: --labelled: {right}: field 'correct': every row is correct (60 of 60); judging is "
        "measured on correct and wrong responses\n"
    )
    # Both labels, but every wrong row on one prompt: the test split holds one label only.
    rows = [{"prompt": f"p{i}", "response": "r", "correct": True} for i in range(30)]
    lopsided = _rows_file(tmp_path / "lopsided.jsonl", [*rows, {"prompt": "p0", "response": "x", "correct": False}])
    err = _one_line_error(capsys, tmp_path, [], labelled=str(lopsided), judges="pointwise")
    assert err.startswith(f"selftrain: error: --labelled: {lopsided}: its ") and "split holds only correct rows" in err


def test_no_judges_or_an_output_folder_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = _one_line_error(capsys, tmp_path, [], judges=",")
    assert err.startswith("selftrain: error: --judges: ',' names no judge (choose from pointwise, ")
    taken = tmp_path / "taken"
    taken.write_text("")
    err = _one_line_error(capsys, tmp_path, [], out=str(taken))
    assert err == f"selftrain: error: --out {taken}: is a file, not a folder\n"
    err = _one_line_error(capsys, tmp_path, [], out=str(taken / "report"))
    assert err == f"selftrain: error: --out {taken / 'report'}: cannot be created, {taken} is a file\n"
