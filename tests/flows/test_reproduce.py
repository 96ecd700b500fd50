"""A finished tiny campaign: reproduce a round from MLflow alone, its registry versions, and continue mode."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from configs.loader import load_config
from models.integrity import write_record
from tasks.model_registry import registered_name
from tasks.records import sha256_file
from tests.cli import REPO, SELFTRAIN, run_cli

# Margin 1.0 promotes every trained round: round 2 starts from round 1's logged adapter and a champion exists
# (with the tiny model on these splits, round 1 scores below round 0 and the default margin would refuse it).
# train.init=base (ReST-EM): round 2 samples with round 1's adapter but trains a fresh adapter on the base from
# rounds 1 and 2's selected rows, so reproducing it needs round 1's logged rows as well.
# Test and OOD sets of 32 and 16 (tiny.yaml: 128 and 64): no test here reads their scores, only which rounds were
# scored; reproduce re-runs a round, which scores validation alone. evaluate.test_rounds=final: test and OOD score
# the start and the champion once, after the last round (with margin 1.0 both rounds are promoted, so the
# default, `promoted`, would score every round).
SMALL = [
    "configs/tiny.yaml",
    "rounds=2",
    "prompts.train_size=64",
    "prompts.heldout_size=64",
    "prompts.test_size=32",
    "prompts.ood_size=16",
    "evaluate.promotion_margin=1.0",
    "train.init=base",
    "evaluate.test_rounds=final",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> dict:
    """One finished two-round tiny campaign, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("reproduce")
    run_cli(["run", *SMALL, f"tracking.output_dir={root / 'runs'}"], cli_env)
    uri = f"sqlite:///{root / 'runs' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("selftrain-tiny").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`selftrain.kind` = 'campaign'")
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    rounds = {int(r.data.tags["selftrain.round"]): r for r in children}
    return {"root": root, "env": cli_env, "uri": uri, "client": client, "parent": parent, "rounds": rounds}


def test_reproduce_round_two_matches_exactly(campaign: dict) -> None:
    original = campaign["rounds"][2]
    # From MLflow alone: the campaign folder (round 1's selected rows, the accumulated set) is out of reach.
    folder = Path(campaign["parent"].data.tags["selftrain.dir"])
    hidden = folder.with_name(folder.name + "-hidden")
    folder.rename(hidden)
    try:
        proc = run_cli(
            [
                "reproduce",
                original.info.run_id,
                "--tracking-uri",
                campaign["uri"],
                "--output-dir",
                str(campaign["root"] / "r"),
            ],
            campaign["env"],
        )
    finally:
        hidden.rename(folder)
    print(proc.stdout)
    assert "reproduced exactly" in proc.stdout
    client = campaign["client"]
    (run,) = client.search_runs(
        [original.info.experiment_id], f"tags.`selftrain.reproduces` = '{original.info.run_id}'"
    )
    (child,) = client.search_runs([original.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    old, new = original.data.metrics, child.data.metrics
    exact = {k for k in old if not k.endswith(("seconds", "per_s"))}
    assert {"train/loss", "val/accuracy", "judge/accept_rate", "select/rows"} <= exact
    assert {k: new[k] for k in exact} == {k: old[k] for k in exact}
    report = json.loads(
        Path(client.download_artifacts(run.info.run_id, "comparison.json", str(campaign["root"]))).read_text()
    )
    assert report["match"] and all(report["files"].values())
    assert "adapter/adapter_model.safetensors" in report["files"] and "selected.jsonl" in report["files"]
    assert report["files"]["accumulated.jsonl"]  # the same merged training set, by content hash
    recorded = json.loads(Path(client.download_artifacts(original.info.run_id, "round_input.json")).read_text())
    round1 = campaign["rounds"][1].info.run_id
    (source,) = recorded["earlier_selected_sources"]  # round 1's selected rows, where they were logged
    assert (source["run_id"], source["path"]) == (round1, "data/selected.jsonl")
    logged = Path(client.download_artifacts(round1, "data/selected.jsonl", str(campaign["root"] / "r1")))
    assert source["sha256"] == sha256_file(logged) == recorded["state"]["earlier_selected"][0]["sha256"]
    downloaded = Path(report["workdir"]) / "inputs" / "earlier_selected" / "1" / "selected.jsonl"
    assert sha256_file(downloaded) == source["sha256"]  # the re-run read the downloaded copy
    assert child.data.tags["selftrain.trained_from"] == original.data.tags["selftrain.trained_from"]
    assert "adapter" not in child.data.tags["selftrain.trained_from"]  # a fresh adapter on the base
    assert campaign["rounds"][1].data.tags["selftrain.promoted"] == "true"  # margin 1.0: SMALL promotes it
    assert recorded["policy_source"] == f"runs:/{campaign['rounds'][1].info.run_id}/adapter"  # round 1's adapter


def test_rounds_that_become_the_champion_are_registered_with_the_champion_alias(campaign: dict) -> None:
    client, name = campaign["client"], registered_name("tiny")
    promoted = [i for i, r in sorted(campaign["rounds"].items()) if r.data.tags["selftrain.promoted"] == "true"]
    assert promoted == [1, 2]  # margin 1.0 promotes every trained round, so the checks below always run
    # A promoted round is registered when it becomes the campaign's champion: at least as good on validation as
    # the best before it, the starting policy included (margin 1.0 promotes rounds below it too).
    history = client.get_metric_history(campaign["parent"].info.run_id, "val/accuracy")
    accuracy = {i: campaign["rounds"][i].data.metrics["val/accuracy"] for i in promoted}
    best, champions = {m.step: m.value for m in history}[0], []
    for i in promoted:
        if accuracy[i] >= best - 1e-9:
            best, champions = max(best, accuracy[i]), [*champions, i]
    versions = client.search_model_versions(f"name='{name}'")
    by_run = {v.run_id: v for v in versions}
    assert sorted(by_run) == sorted(campaign["rounds"][i].info.run_id for i in champions)
    if not champions:
        return  # no round beat the start: nothing registered, no alias
    # The alias is on the best of them (ties: the later round).
    alias = client.get_model_version_by_alias(name, "champion")
    top = max(champions, key=lambda i: (accuracy[i], i))
    assert alias.run_id == campaign["rounds"][top].info.run_id
    best = alias
    # A logged model of the round run (MLflow 3's Models tab), the version's source its location.
    (model,) = client.get_run(best.run_id).outputs.model_outputs
    logged = client.get_logged_model(model.model_id)
    assert (logged.source_run_id, logged.name, best.source) == (best.run_id, "policy", logged.artifact_location)
    files = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id)}
    # An MLflow pyfunc model saved from code: its code and the module it imports, no pickle.
    assert {"MLmodel", "champion_pyfunc.py", "code", "artifacts"} <= files and not any(
        f.endswith(".pkl") for f in files
    )
    held = {Path(a.path).name for a in client.list_logged_model_artifacts(model.model_id, "artifacts")}
    assert held == {"adapter", "policy.json", "base"}  # the tiny base travels with the version


def test_test_rounds_final_scores_test_for_the_start_and_the_champion_only(campaign: dict) -> None:
    client, parent = campaign["client"], campaign["parent"].info.run_id
    val = {m.step: m.value for m in client.get_metric_history(parent, "val/accuracy")}
    champion = max(val, key=lambda step: (val[step], step))  # every round promoted: the best, ties the later
    test = {m.step: m.value for m in client.get_metric_history(parent, "test/accuracy")}
    assert sorted(test) == sorted({0, champion})
    assert sorted(m.step for m in client.get_metric_history(parent, "test/ood_accuracy")) == sorted({0, champion})
    final = client.get_run(parent).data.metrics
    assert final["final/test_gain"] == pytest.approx(test[champion] - test[0])


def test_what_the_champion_was_trained_on_is_read_from_its_rounds(campaign: dict, tmp_path: Path) -> None:
    from tasks.champion_lineage import trained_prompts

    client, name = campaign["client"], registered_name("tiny")
    best = client.get_model_version_by_alias(name, "champion")
    cfg = load_config(SMALL[0], [*SMALL[1:], f"tracking.output_dir={campaign['root'] / 'runs'}"]).tracking
    trained = trained_prompts(cfg, best, tmp_path)
    last = int(client.get_run(best.run_id).data.tags["selftrain.round"])
    expected = []
    for index in range(1, last + 1):
        run_id = campaign["rounds"][index].info.run_id
        for name_ in ("prompts.jsonl", "selected.jsonl"):
            logged = Path(client.download_artifacts(run_id, f"data/{name_}", str(tmp_path / "x" / str(index))))
            expected += [json.loads(line)["prompt"] for line in logged.read_text().splitlines()]
    assert sorted(row["prompt"] for row in trained.rows) == sorted(expected)
    parent = campaign["parent"].info.run_id
    assert trained.read == [f"rounds 1-{last} of campaign run {parent} ({name} version {best.version})"]
    assert trained.missing == []  # the fixture campaign started from the base: nothing further down
    # A campaign that started from a version since deleted: what is not in the store any more is named, not guessed.
    client.set_tag(parent, "selftrain.start_policy", "selftrain-gone/7")
    try:
        gone = trained_prompts(cfg, best, tmp_path / "gone")
    finally:
        client.delete_tag(parent, "selftrain.start_policy")
    assert gone.rows == trained.rows and gone.read == trained.read
    assert gone.missing == [
        "selftrain-gone version 7 or its round run is no longer in the store (RESOURCE_DOES_NOT_EXIST)"
    ]


def test_a_champion_trained_on_what_the_campaign_scores_is_refused(campaign: dict, tmp_path: Path) -> None:
    # A campaign of the same name (so the same registered model) reading its prompts from files, whose test file
    # asks problems the champion's round 1 trained on: were it to start from that champion, its test figure would
    # score trained items as held out. Its training and validation files are the fixture's validation draw.
    client, name = campaign["client"], registered_name("tiny")
    best = client.get_model_version_by_alias(name, "champion")
    trained = Path(client.download_artifacts(campaign["rounds"][1].info.run_id, "data/prompts.jsonl", str(tmp_path)))
    held_out = Path(campaign["parent"].data.tags["selftrain.dir"]) / "validation.jsonl"
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    files = {
        "train": rows[:40],
        "validation": rows[40:],
        "test": [json.loads(line) for line in trained.read_text().splitlines()][:8],
    }
    paths = {}
    for split, split_rows in files.items():
        paths[split] = tmp_path / f"{split}.jsonl"
        lines = [json.dumps({"prompt": row["prompt"], "answer": row["answer"]}) for row in split_rows]
        paths[split].write_text("\n".join(lines) + "\n")
    args = [
        *SMALL,
        "rounds=1",
        "start_from=champion",
        "train.init=continue",
        "prompts.source=file",
        *(f"prompts.{split}_path={path}" for split, path in paths.items()),
        "prompts.train_size=16",
        "prompts.validation_size=16",
        "prompts.test_size=8",
        f"tracking.output_dir={campaign['root'] / 'runs'}",
    ]
    proc = run_cli(["run", *args], campaign["env"], check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("selftrain: error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert errors[0].startswith(f"selftrain: error: start_from=champion: {name} version {best.version}: 8 row(s) ")
    assert "of the test prompts are problems it was trained on, so they are not held out from it" in errors[0]
    assert errors[0].endswith("give the campaign another name (its own registered model)"), errors[0]
    assert "Traceback" not in proc.stderr
    started = client.search_runs([campaign["parent"].info.experiment_id], "tags.`selftrain.start_policy` != ''")
    assert started == []  # refused before the champion was pinned as its start


def test_a_champion_of_another_base_model_is_refused_in_one_line(campaign: dict, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from flows.start_policy import StartPolicyError, start_policy
    from tasks.records import ModelRef

    out = f"tracking.output_dir={campaign['root'] / 'runs'}"
    config = load_config(SMALL[0], [*SMALL[1:], "start_from=champion", "train.init=continue", out])
    other = ModelRef(source="tiny", base=str(tmp_path / "other-tiny"), sha256="0" * 64)
    expected = (
        r"^start_from=champion: selftrain-tiny version \d+ was trained on another base model than this campaign's "
        r"tiny model \(.*other-tiny\): start from the base \(start_from=base\), or give the campaign another name"
    )
    with pytest.raises(StartPolicyError, match=expected):
        start_policy(config, other, SimpleNamespace(workdir=tmp_path))  # type: ignore[arg-type]
    assert not (tmp_path / "start-policy").exists()  # nothing pinned


def test_continue_mode_starts_from_the_champion(campaign: dict) -> None:
    client, name = campaign["client"], registered_name("tiny")
    best = client.get_model_version_by_alias(name, "champion")
    out = campaign["root"] / "runs"
    # start_from=champion continues the champion's adapter: train.init=continue (base would retrain from scratch).
    args = [*SMALL, "rounds=1", "start_from=champion", "train.init=continue", f"tracking.output_dir={out}"]
    proc = run_cli(["run", *args], campaign["env"])
    assert f"starting from {name} version {best.version}" in proc.stderr
    experiment = campaign["parent"].info.experiment_id
    (parent,) = client.search_runs([experiment], "tags.`selftrain.start_policy` != ''")
    assert parent.data.tags["selftrain.start_policy"] == f"{name}/{best.version}"
    round0 = client.get_metric_history(parent.info.run_id, "val/accuracy")[0]
    assert round0.step == 0 and round0.value == float(best.tags["accuracy"])  # the champion, re-measured: same score
    (child,) = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    recorded = json.loads(Path(client.download_artifacts(child.info.run_id, "round_input.json")).read_text())
    assert recorded["policy_source"] == f"runs:/{best.run_id}/adapter" and recorded["round"] == 1


def test_reproduce_refuses_another_base_model(
    campaign: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same cache entry name with other bytes: a tiny model whose generation settings were edited (its
    # content record rewritten, so the cache sees an intact build). Its content hash differs from the one
    # the round recorded, so reproduce must stop before running anything.
    original = campaign["rounds"][1]
    client = campaign["client"]
    recorded = json.loads(Path(client.download_artifacts(original.info.run_id, "round_input.json")).read_text())
    base = Path(recorded["policy"]["base"])
    other = tmp_path / "cache" / "models" / base.name
    shutil.copytree(base, other)
    settings = json.loads((other / "generation_config.json").read_text())
    (other / "generation_config.json").write_text(json.dumps(settings | {"repetition_penalty": 1.3}))
    write_record(other)

    # In this process (the refusal comes before any flow runs): the installed command's exit status and error line
    # are `flows.cli.main`'s (tests/flows/test_cli.py), and a subprocess would add ~10 s of imports.
    from flows.cli import main

    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))
    args = ["reproduce", original.info.run_id, "--tracking-uri", campaign["uri"], "--output-dir", str(tmp_path / "r")]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 1, out[-2000:] + err[-3000:]
    assert f"selftrain: error: run {original.info.run_id}: the base model {other}" in err
    assert recorded["base_fingerprint"][:16] in err and "Traceback" not in err
    reruns = client.search_runs([original.info.experiment_id], "tags.`selftrain.kind` = 'reproduce'")
    assert not [r for r in reruns if r.data.tags["selftrain.dir"].startswith(str(tmp_path))]  # nothing recorded


def test_reproduce_refuses_earlier_rows_it_cannot_check(campaign: dict, tmp_path: Path) -> None:
    from flows.reproduce import fetch_earlier  # the flow stack loads only for this module's tests

    client, run_id = campaign["client"], campaign["rounds"][2].info.run_id
    recorded = json.loads(Path(client.download_artifacts(run_id, "round_input.json", str(tmp_path))).read_text())
    (judged,) = recorded["earlier_sources"]  # the judges and the curriculum read round 1's judged rows too
    assert (judged["run_id"], judged["path"]) == (campaign["rounds"][1].info.run_id, "data/judged.jsonl")
    assert [ref.sha256 for ref in fetch_earlier(client, run_id, recorded, "earlier", tmp_path)] == [judged["sha256"]]
    recorded["earlier_selected_sources"][0]["sha256"] = "0" * 64  # the round read other bytes than those logged
    with pytest.raises(ValueError, match=r"earlier_selected file runs:/\w+/data/selected.jsonl has sha256"):
        fetch_earlier(client, run_id, recorded, "earlier_selected", tmp_path / "a")
    # A round recorded before the sources: its local files are used only while they hold the recorded bytes.
    del recorded["earlier_selected_sources"]
    recorded["state"]["earlier_selected"][0]["path"] = str(tmp_path / "gone.jsonl")
    with pytest.raises(ValueError, match="has no earlier_selected_sources and its earlier_selected files are gone"):
        fetch_earlier(client, run_id, recorded, "earlier_selected", tmp_path / "b")


def test_an_unknown_or_campaign_run_id_is_one_line_naming_what_to_pass(
    campaign: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    common = ["--tracking-uri", campaign["uri"], "--output-dir", str(tmp_path)]
    assert main(["reproduce", "0" * 32, *common]) == 2
    assert (
        capsys.readouterr().err == f"selftrain: error: run {'0' * 32}: no such run in {campaign['uri']} "
        "(--tracking-uri sets the store)\n"
    )
    parent = campaign["parent"].info.run_id
    assert main(["reproduce", parent, *common]) == 2
    rounds = ", ".join(f"round {n}: {campaign['rounds'][n].info.run_id}" for n in sorted(campaign["rounds"]))
    assert capsys.readouterr().err == (
        f"selftrain: error: run {parent} is not a round run (no selftrain.round tag); pass one of its rounds' run ids"
        f" ({rounds})\n"
    )
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_round_that_did_not_finish_is_refused_not_compared(
    campaign: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A round killed mid-way has metrics up to where it stopped: comparing with them would report the steps it never
    # reached as differences. Refused by its status, still running or killed, before anything is written.
    from flows.cli import main

    client, round2 = campaign["client"], campaign["rounds"][2]
    stopped = client.create_run(round2.info.experiment_id, tags={"selftrain.round": "2"})
    common = ["--tracking-uri", campaign["uri"], "--output-dir", str(tmp_path)]
    try:
        for status in ("RUNNING", "KILLED"):
            if status != "RUNNING":
                client.set_terminated(stopped.info.run_id, status)
            assert main(["reproduce", stopped.info.run_id, *common]) == 2
            assert capsys.readouterr().err == (
                f"selftrain: error: run {stopped.info.run_id} (round 2) is {status}, not finished, so it has no whole "
                "round to compare with; resume its campaign (selftrain run with its config and name), which finishes "
                "this run, then reproduce it\n"
            )
    finally:
        client.delete_run(stopped.info.run_id)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("field", "metric"), [("base_dtype", "base_bfloat16"), ("head_dtype", "head_bfloat16")])
def test_a_round_trained_with_a_dtype_auto_names_it_as_a_source_of_difference(field: str, metric: str) -> None:
    from flows.reproduce_check import nondeterminism
    from models.loading import resolve_train_dtype

    config = load_config("tiny", [f"train.{field}=auto"])
    recorded = {"config": config.model_dump(mode="json"), "versions": {}}
    (source,) = nondeterminism(recorded, config)
    assert f"train.{field}=auto trains in {resolve_train_dtype('auto')} on this CPU" in source
    assert f"train/{metric}" in source
    plain = load_config("tiny")
    assert nondeterminism({"config": plain.model_dump(mode="json"), "versions": {}}, plain) == []


def test_a_store_that_cannot_hold_the_run_is_one_line_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cases = {
        (): f"no MLflow store at {tmp_path / 'runs' / 'mlflow.db'} (pass --tracking-uri or set MLFLOW_TRACKING_URI)",
        ("--tracking-uri", "foo://bar"): "--tracking-uri foo://bar: unknown tracking URI scheme 'foo'",
        ("--tracking-uri", str(tmp_path / "x.db")): f"--tracking-uri {tmp_path / 'x.db'}: MLflow 3 refuses",
    }
    for flags, expected in cases.items():
        assert main(["reproduce", "abc", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"selftrain: error: {expected}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # no empty store made on the way


def test_an_output_dir_that_cannot_be_a_folder_is_one_line_after_the_store_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"")  # a store file is all the store check asks; the folder check comes before any run id
    taken = tmp_path / "taken"
    taken.write_text("")
    cases = {
        str(taken): f"--output-dir {taken}: is a file, not a folder",
        str(taken / "sub"): f"--output-dir {taken / 'sub'}: cannot be created, {taken} is a file",
    }
    for output_dir, expected in cases.items():
        assert main(["reproduce", "abc", "--tracking-uri", f"sqlite:///{store}", "--output-dir", output_dir]) == 2
        err = capsys.readouterr().err
        assert err == f"selftrain: error: {expected}\n", err
    assert store.read_bytes() == b""  # nothing opened the store
    # A store that cannot hold the run is still named first.
    none = tmp_path / "none.db"
    assert main(["reproduce", "abc", "--tracking-uri", f"sqlite:///{none}", "--output-dir", str(taken)]) == 2
    assert capsys.readouterr().err == f"selftrain: error: no MLflow store at {none}\n"


def test_a_killed_reproduce_is_closed_by_the_next_one_not_left_running(campaign: dict, tmp_path: Path) -> None:
    import os
    import signal
    import time

    from configs.schema import TrackingConfig
    from flows.reproduce import close_dead_reproductions

    client, round1 = campaign["client"], campaign["rounds"][1]
    args = ["reproduce", round1.info.run_id, "--tracking-uri", campaign["uri"], "--output-dir", str(tmp_path)]
    proc = subprocess.Popen([SELFTRAIN, *args], cwd=REPO, env=campaign["env"], stdout=subprocess.DEVNULL)
    cfg = TrackingConfig(tracking_uri=campaign["uri"], experiment="selftrain-tiny")
    query = f"tags.`selftrain.reproduces` = '{round1.info.run_id}'"

    def ours() -> list:
        runs = client.search_runs([round1.info.experiment_id], query)
        return [r for r in runs if r.data.tags["selftrain.dir"].startswith(str(tmp_path))]

    try:
        deadline = time.monotonic() + 300
        while not ours() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        (run,) = ours()
        close_dead_reproductions(cfg)  # alive: its lock is held, so it is left alone
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no handler runs: what an OOM kill or a power cut leaves
        proc.wait()
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    close_dead_reproductions(cfg)
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "FAILED"
    assert closed.data.tags["selftrain.failure"] == "its process died (found by a later selftrain reproduce)"
    children = client.search_runs([round1.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert all(child.info.status == "FAILED" for child in children)


@pytest.mark.parametrize("logged_by", ["round", "campaign"])
def test_a_missing_artifact_is_one_line_naming_the_run_the_path_and_the_store(
    campaign: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], logged_by: str
) -> None:
    # An artifact deleted or moved in the store (the round's recorded inputs, or the validation file logged on the
    # campaign run): one line naming what is missing where, exit status 2, and no empty re-run folder left behind.
    from mlflow.utils.file_utils import local_file_uri_to_path

    from flows.cli import main

    client, round1 = campaign["client"], campaign["rounds"][1]
    run = round1 if logged_by == "round" else campaign["parent"]
    path = "round_input.json" if logged_by == "round" else "data/validation.jsonl"
    logged = Path(local_file_uri_to_path(client.get_run(run.info.run_id).info.artifact_uri)) / path
    moved = logged.with_name(logged.name + ".bak")
    logged.rename(moved)
    output = tmp_path / "r"
    try:
        args = ["reproduce", round1.info.run_id, "--tracking-uri", campaign["uri"], "--output-dir", str(output)]
        code = main(args)
    finally:
        moved.rename(logged)
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert err == (
        f"selftrain: error: run {run.info.run_id} has no artifact {path} in {campaign['uri']} "
        "(was it deleted or moved?); nothing was run\n"
    )
    assert not output.exists()  # no empty reproduce-*/inputs folder


def test_a_file_campaigns_round_is_refused_when_its_input_file_changed_or_is_not_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The round would draw other prompts from an edited training file, and every file it made would differ for a
    # reason the comparison cannot name: refused before anything runs, naming the field, the file and what differs.
    from flows.campaign_state import input_files
    from flows.reproduce_check import MissingArtifactError, check_input_files

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"prompt": "What is 1 plus 2?", "answer": 3}\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("tiny", ["prompts.source=file", "prompts.train_path=data/train.jsonl"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("x")
    parent = client.create_run(experiment, tags={"selftrain.input_files": json.dumps(input_files(config))})
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id})
    round_run = client.get_run(child.info.run_id)
    check_input_files(client, round_run, config)  # the same bytes: nothing to say
    (data / "train.jsonl").write_text('{"prompt": "What is 1 plus 2?", "answer": 4}\n')
    with pytest.raises(MissingArtifactError) as edited:
        check_input_files(client, round_run, config)
    assert str(edited.value).startswith(
        f"run {child.info.run_id}: prompts.train_path=data/train.jsonl: holds other bytes than the round read (sha256 "
    )
    assert str(edited.value).endswith("restore the file to reproduce the round; nothing was run")
    monkeypatch.chdir(data)  # another folder: the relative path finds nothing
    with pytest.raises(MissingArtifactError) as gone:
        check_input_files(client, round_run, config)
    assert str(gone.value) == (
        f"run {child.info.run_id}: prompts.train_path=data/train.jsonl: not found (read relative to the working "
        f"directory, {data}); the round read it, so run from the folder its campaign ran in or restore it; nothing "
        "was run"
    )
    untagged = client.create_run(experiment)  # a campaign from before the tag, or of the built-in task
    orphan = client.create_run(experiment, tags={"mlflow.parentRunId": untagged.info.run_id})
    check_input_files(client, client.get_run(orphan.info.run_id), config)
