"""The model registry on the embedded SQLite store: versions per promoted run, the champion alias, download."""

from __future__ import annotations

from pathlib import Path

from configs.schema import TrackingConfig
from tasks.model_registry import CHAMPION, champion, download_policy, register_policy
from tasks.records import ModelRef, sha256_dir
from tasks.tracking import end_run, start_run
from tasks.tracking_store import client_for

NAME = "selftrain-unit"


def _round(cfg: TrackingConfig, tmp: Path, tag: str) -> tuple[str, ModelRef]:
    adapter = tmp / tag / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(tag.encode() * 10)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    run_id = start_run(cfg, tag, params={}, tags={})
    client_for(cfg).log_artifacts(run_id, str(adapter), "adapter")
    end_run(cfg, run_id)
    return run_id, ModelRef(source="tiny", base="/models/tiny", adapter=str(adapter), sha256=sha256_dir(adapter))


def test_alias_follows_the_best_and_registration_is_idempotent(tmp_path: Path) -> None:
    cfg = TrackingConfig(output_dir=str(tmp_path), experiment="registry")
    base = ModelRef(source="tiny", base="/models/tiny", sha256="b" * 64)
    runs = {tag: _round(cfg, tmp_path, tag) for tag in ("r1", "r2", "r3", "r4", "r5", "r6")}

    def reg(tag: str, accuracy: float, heldout: str = "h1", decoding: str = "greedy") -> tuple[str, bool, bool]:
        run_id, policy = runs[tag]
        return register_policy(
            cfg, NAME, run_id, policy, base, accuracy=accuracy, heldout_sha256=heldout, decoding=decoding
        )

    assert reg("r1", 0.50) == ("1", True, True)  # first version: champion
    assert reg("r2", 0.45) == ("2", False, True)  # worse than 0.50 on the same validation set
    assert reg("r2", 0.45) == ("2", False, False)  # a resumed campaign registers again: same version, not made
    assert reg("r3", 0.49) == ("3", False, True)  # within the campaign's margin, but the alias takes no margin
    assert reg("r4", 0.90, heldout="h2") == ("4", False, True)  # another validation set: not comparable
    assert reg("r5", 0.50) == ("5", True, True)  # a tie on the same set: the newer version
    # The same set decoded another way (evaluate.resample_failed_working): not comparable either.
    assert reg("r6", 0.95, decoding="greedy, resample_failed_working=4") == ("6", False, True)
    client = client_for(cfg)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 6
    best = champion(cfg, NAME)
    assert best is not None and str(best.version) == "5" and CHAMPION in client.get_registered_model(NAME).aliases
    assert best.tags["base_sha256"] == base.sha256
    # The version is a logged model of the round run (MLflow 3's Models tab), one per run whatever the retries.
    (model,) = client.search_logged_models([client.get_run(runs["r5"][0]).info.experiment_id],
                                           filter_string=f"source_run_id = '{runs['r5'][0]}'")  # fmt: skip
    assert best.source == model.artifact_location
    assert (model.name, model.model_type) == ("policy", "selftrain-policy")
    assert [output.model_id for output in client.get_run(runs["r5"][0]).outputs.model_outputs] == [model.model_id]
    logged = client.search_logged_models([model.experiment_id], filter_string=f"source_run_id = '{runs['r2'][0]}'")
    assert len(logged) == 1  # r2 registered twice: one model


def test_a_logged_policy_a_kill_left_unregistered_is_reused(tmp_path: Path) -> None:
    # Killed between logging the model and creating the version: the resumed registration takes that model.
    from tasks.model_registry import _log_policy

    cfg = TrackingConfig(output_dir=str(tmp_path), experiment="registry")
    base = ModelRef(source="tiny", base="/models/tiny", sha256="b" * 64)
    run_id, policy = _round(cfg, tmp_path, "r1")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("placeholder\n")
    model_id = _log_policy(client_for(cfg), client_for(cfg).get_run(run_id), folder).model_id
    register_policy(cfg, NAME, run_id, policy, base, accuracy=0.5, heldout_sha256="h")
    version = champion(cfg, NAME)
    assert version is not None and version.source == client_for(cfg).get_logged_model(model_id).artifact_location


def test_download_gives_the_adapter_and_base_reference(tmp_path: Path) -> None:
    cfg = TrackingConfig(output_dir=str(tmp_path), experiment="registry")
    base = ModelRef(source="tiny", base="/models/tiny", sha256="b" * 64)
    run_id, policy = _round(cfg, tmp_path, "r1")
    register_policy(cfg, NAME, run_id, policy, base, accuracy=0.5, heldout_sha256="h")
    assert champion(cfg, "selftrain-none") is None
    version = champion(cfg, NAME)
    assert version is not None
    local, source = download_policy(cfg, version, tmp_path / "start")
    assert local.base == base.base and local.source == "tiny" and local.sha256 == policy.sha256
    assert sorted(p.name for p in Path(str(local.adapter)).iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert source == f"runs:/{run_id}/adapter"


def test_a_version_registered_under_the_round_run_still_downloads(tmp_path: Path) -> None:
    # Versions registered before logged models: the pyfunc model under the round run's `policy/` folder.
    from tasks.champion_model import save_policy_model
    from tasks.model_registry import download_version

    cfg = TrackingConfig(output_dir=str(tmp_path), experiment="registry")
    base = ModelRef(source="hub", base="org/model", sha256="b" * 64)
    run_id, policy = _round(cfg, tmp_path, "r1")
    save_policy_model(tmp_path / "policy", policy, base)
    client = client_for(cfg)
    client.log_artifacts(run_id, str(tmp_path / "policy"), "policy")
    client.create_registered_model(NAME)
    client.create_model_version(NAME, f"runs:/{run_id}/policy", run_id=run_id)
    version = client.get_model_version(NAME, "1")
    local, _ = download_policy(cfg, version, tmp_path / "start")
    assert local.sha256 == policy.sha256 and local.base == "org/model"
    adapter, where, settings = download_version(cfg, version, tmp_path / "export")
    assert (where, settings["base"]["source"]) == ("org/model", "hub") and sha256_dir(adapter) == policy.sha256
