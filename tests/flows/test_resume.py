"""Resume: a campaign killed while training picks up where it stopped; identity and dead-run clean-up."""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from configs.loader import load_config
from flows.campaign_state import campaign_key, config_key, open_campaign, recorded_config, try_lock
from flows.reproduce_check import compare
from tasks.tracking import PARENT_TAG, find_runs, finish_run, log_metrics, open_run, start_run
from tasks.tracking_store import client_for
from tests.cli import REPO, SELFTRAIN, run_cli

# Test and OOD sets of 32 and 16 (tiny.yaml: 128 and 64): the resume is checked on what was cached, recomputed
# and logged per round, none of which depends on how many test prompts the campaign scores.
SMALL = [
    "configs/tiny.yaml",
    "rounds=2",
    "prompts.train_size=64",
    "prompts.validation_size=64",
    "prompts.test_size=32",
    "prompts.ood_size=16",
]


def test_campaign_key_ignores_where_and_how_fast_but_not_what() -> None:
    base = load_config("tiny", [])
    assert campaign_key(base) == campaign_key(load_config("tiny", ["tracking.output_dir=/elsewhere"]))
    assert campaign_key(base) == campaign_key(load_config("tiny", ["model.torch_threads=2"]))
    assert campaign_key(base) != campaign_key(load_config("tiny", ["seed=1"]))
    assert campaign_key(base) != campaign_key(load_config("tiny", ["start_from=champion"]))


def test_dead_campaign_is_marked_failed_and_resumed_live_one_is_not(tmp_path: Path) -> None:
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-unit"])
    cfg = config.tracking
    dead = open_campaign(config)  # a campaign whose process "dies": its lock is released, its runs stay RUNNING
    child = start_run(cfg, "tiny-round-1", params={}, tags={"selftrain.round": "1"}, parent_run_id=dead.parent_run_id)
    dead.release()
    alive = open_campaign(config, fresh=True)  # a live campaign holds its lock: never touched
    other = open_campaign(config.model_copy(update={"seed": 5}))  # another config: sweeps the dead one only
    client = client_for(cfg)
    assert client.get_run(dead.parent_run_id).info.status == "FAILED"
    assert client.get_run(child).info.status == "FAILED"
    assert "died" in client.get_run(child).data.tags["selftrain.failure"]
    assert client.get_run(alive.parent_run_id).info.status == "RUNNING"
    assert other.parent_run_id not in (dead.parent_run_id, alive.parent_run_id) and not other.resumed
    resumed = open_campaign(config)  # same config: the dead (not the live) campaign is reopened
    assert resumed.resumed and resumed.parent_run_id == dead.parent_run_id and resumed.workdir == dead.workdir
    assert client.get_run(dead.parent_run_id).info.status == "RUNNING"
    assert try_lock(resumed.workdir) is None  # held by this process now
    for campaign in (alive, other, resumed):
        campaign.release()
    assert len({alive.workdir, other.workdir, dead.workdir}) == 3


def test_an_edited_prompt_file_makes_another_campaign_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"id": "r{i}", "prompt": "q{i}", "answer": {i}}}\n' for i in range(20)))
    files = ["prompts.source=file", f"prompts.train_path={train}"]
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-files", *files])
    builtin = load_config("tiny", [f"tracking.output_dir={tmp_path}"])
    assert campaign_key(builtin) == config_key(builtin)  # the built-in task reads no file: its key is unchanged
    first = open_campaign(config)
    first.release()  # its process "dies"
    train.write_text(train.read_text().replace('"q3"', '"q3 edited"'))
    capsys.readouterr()
    second = open_campaign(config)  # another campaign: the first drew from the old file
    assert not second.resumed and second.parent_run_id != first.parent_run_id
    assert (
        f"campaign {first.campaign_id} has this config but was started with other contents of prompts.train_path: "
        "not resumed (restore those files to resume it)"
    ) in capsys.readouterr().out
    second.release()
    train.write_text(train.read_text().replace('"q3 edited"', '"q3"'))
    again = open_campaign(config)  # the file as the first campaign read it: resumed
    assert again.resumed and again.parent_run_id == first.parent_run_id
    again.release()


def test_speed_only_fields_are_tags_so_a_resumed_round_may_change_them(tmp_path: Path) -> None:
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-params"])
    params, tags = recorded_config(config)
    assert "model.torch_threads" not in params and tags["selftrain.config.model.torch_threads"] == "1"
    assert not [key for key in params if key.startswith("tracking.")] and params["generate.k"] == "4"
    faster = config.model_copy(update={"model": config.model.model_copy(update={"torch_threads": 2})})
    run_ids = []
    for cfg in (config, faster):  # the round run of a crashed campaign, reopened with another thread count
        params, tags = recorded_config(cfg)
        run_ids.append(open_run(cfg.tracking, "r1", params=params, tags=tags, match={"selftrain.round": "1"}))
    run = client_for(config.tracking).get_run(run_ids[0])
    assert run_ids[0] == run_ids[1] and run.data.tags["selftrain.config.model.torch_threads"] == "2"


def test_a_round_run_logged_by_code_that_wrote_params_differently_reopens(tmp_path: Path) -> None:
    # Before 2026-12-07 params were PyYAML's text of each value: a campaign killed then must still resume under
    # code that writes them as one line, with the same values; a value that really changed is refused.
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-old-params"])
    params, tags = recorded_config(config)
    assert params["generate.stop"] == '["\\n"]' and params["prompts.template"] == '"Question: {prompt}\\nAnswer:"'
    written_before = {
        **params,
        "generate.stop": "['\n\n    ']",
        "prompts.template": "'Question: {prompt}\n\n  Answer:'",
    }
    first = open_run(config.tracking, "r1", params=written_before, tags=tags, match={"selftrain.round": "1"})
    again = open_run(config.tracking, "r1", params=params, tags=tags, match={"selftrain.round": "1"})
    assert again == first
    logged = client_for(config.tracking).get_run(first).data.params
    assert logged["generate.stop"] == "['\n\n    ']"  # kept as it was logged: MLflow never rewrites a param
    with pytest.raises(Exception, match=r"Changing param values is not allowed.*generate\.k"):
        open_run(config.tracking, "r1", params={**params, "generate.k": "8"}, tags=tags, match={"selftrain.round": "1"})


def test_relogged_metrics_keep_one_point_per_round_and_success_clears_the_failure_tag(tmp_path: Path) -> None:
    cfg = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-metrics"]).tracking
    parent = start_run(cfg, "p", params={}, tags={"selftrain.failure": "its process died"})
    child = start_run(cfg, "c", params={}, tags={}, parent_run_id=parent)
    client = client_for(cfg)
    log_metrics(cfg, [child, parent], {"eval/accuracy": 0.5, "generate/seconds": 3.0}, step=1)
    log_metrics(cfg, [child, parent], {"eval/accuracy": 0.5, "generate/seconds": 3.4}, step=1)  # re-run stage
    log_metrics(cfg, [child, parent], {"eval/accuracy": 0.6}, step=2)  # the next round still adds its point
    for run_id in (child, parent):
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "eval/accuracy")] == [(1, 0.5), (2, 0.6)]
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "generate/seconds")] == [(1, 3.0)]
    finish_run(cfg, parent)
    finish_run(cfg, child)  # no failure tag to clear: fine
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and "selftrain.failure" not in run.data.tags


def test_metrics_with_nothing_to_count_are_left_out_and_old_nan_points_compare_equal(tmp_path: Path) -> None:
    cfg = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=resume-nan"]).tracking
    client = client_for(cfg)
    run = start_run(cfg, "r", params={}, tags={})
    log_metrics(cfg, [run], {"judge/accept_rate": math.nan, "judge/x": math.inf, "judge/prompts": 0.0}, step=1)
    assert client.get_run(run).data.metrics == {"judge/prompts": 0.0}
    # A run logged before NaN was left out holds NaN points: a reproduction of it still matches on them.
    old, new = (start_run(cfg, name, params={}, tags={}) for name in ("old", "new"))
    for run_id in (old, new):
        client.log_metric(run_id, "judge/accept_rate", math.nan, step=1)
    assert compare(client, old, new, tmp_path / "cmp")["mismatches"] == []


@pytest.mark.slow
def test_killed_campaign_resumes_without_recomputing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    args = ["run", *SMALL, f"tracking.output_dir={runs}"]
    with open(tmp_path / "first.log", "w") as log:
        # Own session: SIGKILL to the group also kills the temporary Prefect server the CLI started.
        first = subprocess.Popen(
            [SELFTRAIN, *args], cwd=REPO, env=cli_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 600
        while not (scratch := list(runs.glob("*/round-02/.adapter.*"))):  # round 2's trainer is running
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "round 2 never started training"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    workdir = scratch[0].parents[1]
    done = sorted(workdir.glob("round-01/*.jsonl")) + sorted(workdir.glob("round-02/*.jsonl"))
    mtimes = {path: path.stat().st_mtime_ns for path in [workdir / "validation.jsonl", *done]}
    assert not (workdir / "round-02" / "adapter").exists()

    # A field outside the campaign's identity may change on a resume, and the finished steps stay cache hits.
    second = run_cli(args, cli_env)
    logs = second.stderr
    assert f"resuming campaign {workdir.name}" in logs
    assert "round 1: finished before the resume" in logs
    if "round 1: registered " in (tmp_path / "first.log").read_text():  # promoted: the version is not made again
        assert re.search(r"round 1: already registered as selftrain-\S+ version 1\b", logs), logs[-3000:]
    assert "round 1: registered " not in logs
    assert "Prefect flow run 'tiny' of the dead process marked Crashed" in logs
    assert "Prefect flow run 'tiny-round-2' of the dead process marked Crashed" in logs
    cached = set(re.findall(r"Task run '([a-z]+)-[\w/-]+' - Finished in state Cached", logs))
    assert cached == {"prompts", "evaluate", "generate", "judge", "select"}, cached  # round 0 + round 2 up to train
    assert "train: step" in logs and (workdir / "round-02" / "adapter").is_dir()  # the killed step ran again
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes  # finished steps' files untouched

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("selftrain-tiny")
    every = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in every if r.info.status != "FINISHED"] == []
    parents = [r for r in every if r.data.tags.get("selftrain.kind") == "campaign"]
    assert len(parents) == 1 and parents[0].data.tags["selftrain.resumed"] == "1"
    assert "selftrain.failure" not in parents[0].data.tags  # marked FAILED before it was reopened, cleared at the end
    children = find_runs(
        load_config("tiny", [f"tracking.output_dir={runs}"]).tracking, {PARENT_TAG: parents[0].info.run_id}
    )
    assert sorted(r.data.tags["selftrain.round"] for r in children) == ["1", "2"]
    by_round = {r.data.tags["selftrain.round"]: r for r in children}
    assert "selftrain.resumed" not in by_round["1"].data.tags and by_round["2"].data.tags["selftrain.resumed"] == "1"
    assert [m.step for m in client.get_metric_history(by_round["2"].info.run_id, "train/loss")] == [2]
    assert [m.step for m in client.get_metric_history(by_round["2"].info.run_id, "generate/samples")] == [2]

    # Round 1's flow run keeps the Prefect artifacts it made before the kill, one version each, not a second set
    # from the resume; round 2's new flow run has its own. Read from the temporary server's database, which the
    # CLI's server left (the flow run ids are uuids, stored as text).
    with sqlite3.connect(Path(cli_env["PREFECT_HOME"]) / "prefect.db") as db:
        keys = {
            number: sorted(
                key
                for (key,) in db.execute(
                    "SELECT key FROM artifact WHERE flow_run_id = ? AND type IN ('table', 'markdown')",
                    (by_round[number].data.tags["prefect.flow_run_id"],),
                )
            )
            for number in ("1", "2")
        }
    assert keys == {n: [f"tiny-round-{n}", f"tiny-round-{n}-gate", f"tiny-round-{n}-mlflow"] for n in ("1", "2")}, keys
