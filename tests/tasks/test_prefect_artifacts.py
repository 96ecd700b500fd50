"""The pure builders of the Prefect artifacts (keys, round and summary tables, gate and MLflow notes), the
progress throttle, and the judged-samples table selection logs to MLflow: hand-computed expectations."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.types.names import raise_on_name_alphanumeric_dashes_only

import tasks.prefect_artifacts as pa
from tasks.progress import STEP_LINE
from tasks.report import render_table
from tasks.select import judged_table, select


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("tiny", "round", 3), "tiny-round-3"),
        (("My_Campaign.v2", "round", 10), "my-campaign-v2-round-10"),
        (("--a  b--", "train(dpo)", "progress"), "a-b-train-dpo-progress"),
    ],
)
def test_artifact_key_follows_prefects_rule(parts: tuple, key: str) -> None:
    assert pa.artifact_key(*parts) == key
    assert raise_on_name_alphanumeric_dashes_only(key) == key  # Prefect's own validator accepts it


def test_round_rows_keep_table_order_and_only_measured_metrics() -> None:
    metrics = {"gate/promoted": 1.0, "train/loss": 0.75, "val/accuracy": 0.5, "val/ci_low": 0.4, "judge/x": 9.0}
    metrics |= {"val/ci_high": 0.6, "select/rows": 37.0, "val/ci_low": 0.40004999}  # shown to 4 decimals
    assert pa.round_rows(metrics) == [
        {"metric": "val/accuracy", "name": "validation accuracy", "value": 0.5},
        {"metric": "val/ci_low", "name": "validation 95% CI low", "value": 0.4},
        {"metric": "val/ci_high", "name": "validation 95% CI high", "value": 0.6},
        {"metric": "select/rows", "name": "kept rows", "value": 37.0},
        {"metric": "train/loss", "name": "train loss", "value": 0.75},
        {"metric": "gate/promoted", "name": "promoted", "value": 1.0},
    ]
    tested = pa.round_rows({"test/accuracy": 0.25, "test/ci_low": 0.1, "test/ci_high": 0.3})
    assert [row["metric"] for row in tested] == ["test/accuracy", "test/ci_low", "test/ci_high"]


def test_gate_markdown() -> None:
    assert pa.gate_markdown(2, True, "promoted: 0.61 > 0.44", 0.61) == (
        "# Round 2: promoted\n\n**Gate:** promoted: 0.61 > 0.44\n\n**Validation accuracy:** 0.610\n"
    )
    with_ci = pa.gate_markdown(2, True, "promoted", 0.61, (0.5, 0.7))
    assert with_ci.endswith("**Validation accuracy:** 0.610 [0.500, 0.700] (95% interval)\n")
    skipped = pa.gate_markdown(3, False, "refused: training was skipped", None)
    assert skipped.startswith("# Round 3: not promoted\n") and "not measured (training was skipped)" in skipped


def test_mlflow_link_for_a_server_and_a_note_for_a_local_store() -> None:
    assert pa.mlflow_run_url("http://127.0.0.1:5001/", "7", "abc") == "http://127.0.0.1:5001/#/experiments/7/runs/abc"
    assert pa.mlflow_run_url("https://mlflow.example", "1", "r") == "https://mlflow.example/#/experiments/1/runs/r"
    assert pa.mlflow_run_url("sqlite:////tmp/x/mlflow.db", "7", "abc") is None
    note = pa.mlflow_run_markdown("sqlite:////tmp/x/mlflow.db", "7", "abc", "Round 1 in MLflow")
    assert "`abc`" in note and "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in note
    assert "http://127.0.0.1:5000/#/experiments/7/runs/abc" in note


ROWS = [
    {"round": 0, "promoted": True, "run_id": "p", "accuracy": 0.125, "ci_low": 0.08, "ci_high": 0.19}
    | {"test_accuracy": 0.1, "test_ci_low": 0.05, "test_ci_high": 0.2, "ood_accuracy": 0.0}
    | {"ood_ci_low": 0.0, "ood_ci_high": 0.06},
    {"round": 1, "promoted": False, "run_id": "r1", "accuracy": 0.1, "ci_low": 0.05, "ci_high": 0.15},
    {"round": 2, "promoted": False, "run_id": "r2", "accuracy": None, "ci_low": None, "ci_high": None},
]


def test_summary_rows_are_the_printed_table() -> None:
    summary = pa.summary_rows(ROWS)
    assert summary[0] == {
        "round": 0,
        "validation [95% CI]": "0.125 [0.080, 0.190]",
        "promoted": "start",
        "test [95% CI]": "0.100 [0.050, 0.200]",
        "OOD test [95% CI]": "0.000 [0.000, 0.060]",
        "mlflow run": "p",
    }
    assert (summary[1]["promoted"], summary[1]["test [95% CI]"]) == ("no", "-")
    assert summary[2]["validation [95% CI]"] == "- (not trained)"
    # Cell for cell what `selftrain run` prints (render_table pads columns to fixed widths).
    printed = render_table(ROWS).splitlines()[1:]
    for cells, line in zip(summary, printed, strict=True):
        expected = f"{cells['round']:>5}  {cells['validation [95% CI]']:<22}  {cells['promoted']:<8}  "
        expected += f"{cells['test [95% CI]']:<22}  {cells['OOD test [95% CI]']:<22}"
        assert line == expected.rstrip()
    assert "OOD test [95% CI]" not in pa.summary_rows(ROWS[1:])[0]


def test_a_refused_artifact_is_one_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Prefect refuses the key before any request is made; outside a run the warning is printed.
    assert pa.publish_table("Not A Key!", [{"a": 1}], "d") is False
    assert pa.publish_markdown("also bad", "# x", "d") is False
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("prefect artifact Not A Key!: not created (ValidationError: ")


def test_stage_progress_outside_a_run_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prefect.artifacts.create_progress_artifact", lambda *a, **k: pytest.fail("called"))
    progress = pa.stage_progress("generate")
    progress.update(5, 10)
    assert progress.off and progress.artifact_id is None


def test_stage_progress_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[float] = []
    clock = iter([0.0, 1.0, 2.0, 3.0, 9.0, 9.5, 10.0])  # perf_counter at each update

    def send(self: pa.StageProgress, percent: float) -> None:  # the Prefect call, recorded
        self.artifact_id = self.artifact_id or pa.UUID(int=1)
        sent.append(percent)

    monkeypatch.setattr(pa.StageProgress, "_send", send)
    monkeypatch.setattr(pa.time, "perf_counter", lambda: next(clock))
    progress = pa.StageProgress("train")
    for done in (1, 5, 12, 30, 31, 100, 100):  # of 100
        progress.update(done, 100)
    # 1 (first), 5 (< 10 points, < 5 s: skipped), 12 (+11 points), 30 (+18), 31 (+1 point but 6 s later),
    # 100 (the end), 100 again (no change: skipped)
    assert sent == [1.0, 12.0, 30.0, 31.0, 100.0]


@pytest.mark.parametrize(
    ("line", "stage", "done", "total"),
    [
        ("train: step 3/40, loss 1.2345, 0.50 steps/s", "train", 3, 40),
        ("train(dpo): step 10/10, loss 0.6931, margin 0.000, 1.00 steps/s", "train(dpo)", 10, 10),
        ("reward-model: step 7/9, loss 0.5000", "reward-model", 7, 9),
    ],
)
def test_trainer_lines_move_progress(line: str, stage: str, done: int, total: int) -> None:
    found = STEP_LINE.match(line)
    assert found is not None and (found.group(1), int(found.group(2)), int(found.group(3))) == (stage, done, total)
    assert STEP_LINE.match("tiny model: tiny warm-up step 3/40 loss 1.0") is None


def test_judged_table_joins_selection_by_sample() -> None:
    judged = [
        {"id": "a", "sample": 0, "prompt": "1+1", "response": " 2", "score": 1.0},
        {"id": "a", "sample": 1, "prompt": "1+1", "response": " 2", "score": 1.0},  # duplicate of sample 0
        {"id": "a", "sample": 2, "prompt": "1+1", "response": " 3", "score": 0.0},
        {"id": "b", "sample": 0, "prompt": "2+2", "response": " 4", "score": 0.9},
    ]
    kept = select(judged, threshold=0.5, best_of_k=False, max_per_prompt=2, dedupe=True)
    gold = [{"id": "c", "sample": -1, "prompt": "3+3", "response": " 6", "score": 1.0, "source": "gold"}]
    table = judged_table(judged, kept + gold, threshold=0.5)
    assert table == {
        "id": ["a", "a", "a", "b"],
        "sample": [0, 1, 2, 0],
        "prompt": ["1+1", "1+1", "1+1", "2+2"],
        "response": [" 2", " 2", " 3", " 4"],
        "score": [1.0, 1.0, 0.0, 0.9],
        "kept": [True, False, False, True],
        "reason": [
            "kept",
            "dropped: a duplicate, over the per-prompt cap, or not chosen for diversity",
            "score below the threshold 0.5",
            "kept",
        ],
    }


def test_a_failed_lookup_says_so_and_counts_as_missing(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # the discard port: nothing listens
        assert pa.has_artifact("round-01-summary", uuid4()) is False
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("prefect artifact round-01-summary: not looked up, so it is made again (")
