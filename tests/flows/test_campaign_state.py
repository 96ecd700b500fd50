"""Run-param handling: which config fields become MLflow params and which `selftrain.config.*` tags, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import flatten, load_config
from flows.campaign_state import open_campaign, outside_identity, recorded_config
from tasks.tracking_store import client_for


@pytest.mark.parametrize(
    ("field", "outside"),
    [
        ("tracking", True),
        ("tracking.output_dir", True),
        ("tracking.experiment", True),
        ("model.torch_threads", True),
        ("trackingx.output_dir", False),  # a prefix only counts up to a dot
        ("model.torch_threads_extra", False),
        ("model", False),  # the rest of the model section is what the campaign trains
        ("model.name", False),
        ("seed", False),
    ],
)
def test_outside_identity(field: str, outside: bool) -> None:
    assert outside_identity(field) is outside


def test_recorded_config_splits_params_and_tags_by_hand(tmp_path: Path) -> None:
    config = load_config(
        "tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=params-unit", "model.torch_threads=2"]
    )
    params, tags = recorded_config(config)
    # Where results go and how fast it runs: tags, which a resumed campaign may change.
    assert tags == {
        "selftrain.config.tracking.output_dir": str(tmp_path),
        "selftrain.config.tracking.tracking_uri": "null",
        "selftrain.config.tracking.experiment": "params-unit",
        "selftrain.config.model.torch_threads": "2",
        "selftrain.config.generate.shards": "1",
        "selftrain.config.evaluate.shards": "1",
        "selftrain.config.scale.ray_address": '""',
        "selftrain.config.scale.connect_timeout": "10.0",
        "selftrain.config.storage.base": '""',
    }
    # Everything else: params, with flatten's text, nothing dropped and nothing in both.
    flat = flatten(config)
    named = {key.removeprefix("selftrain.config.") for key in tags}
    assert params == {key: text for key, text in flat.items() if key not in named}
    assert len(params) + len(tags) == len(flat)
    assert params["model.source"] == "tiny" and params["model.name"] == "null" and params["generate.k"] == "4"
    assert params["model.tiny_warmup_steps"] == flat["model.tiny_warmup_steps"]  # same section, still a param


def test_a_new_campaign_run_holds_exactly_these_params_and_tags(tmp_path: Path) -> None:
    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=params-run"])
    campaign = open_campaign(config, fresh=True)
    try:
        run = client_for(config.tracking).get_run(campaign.parent_run_id)
    finally:
        campaign.release()
    params, tags = recorded_config(config)
    assert run.data.params == params
    assert {key: run.data.tags[key] for key in tags} == tags
    assert not [key for key in run.data.params if key.startswith(("tracking.", "selftrain."))]
    assert run.data.tags["selftrain.kind"] == "campaign" and run.data.tags["selftrain.dir"] == str(campaign.workdir)


def test_a_dead_campaign_whose_folder_is_gone_is_closed_not_left_running(tmp_path: Path) -> None:
    import shutil

    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=gone-folder"])
    dead = open_campaign(config, fresh=True)
    dead.release()  # its process died: the lock is free
    shutil.rmtree(dead.workdir)  # and its folder was moved away
    campaign = open_campaign(config)
    try:
        client = client_for(config.tracking)
        old = client.get_run(dead.parent_run_id)
        assert campaign.parent_run_id != dead.parent_run_id and not campaign.resumed
        assert old.info.status == "FAILED"
        reason = f"its folder {dead.workdir} is gone (found by a later selftrain run)"
        assert old.data.tags["selftrain.failure"] == reason
    finally:
        campaign.release()


def test_ctrl_c_while_a_campaign_opens_marks_its_run_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.campaign_state as state

    config = load_config("tiny", [f"tracking.output_dir={tmp_path}", "tracking.experiment=opening"])

    def interrupted(message: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(state, "emit", interrupted)  # Ctrl-C right after the parent run exists
    with pytest.raises(KeyboardInterrupt):
        open_campaign(config, fresh=True)
    client = client_for(config.tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("opening").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["selftrain.failure"] == "interrupted"
    monkeypatch.undo()
    campaign = open_campaign(config)  # its lock was released: the next run resumes it, with its params
    try:
        assert campaign.resumed and campaign.parent_run_id == run.info.run_id
        assert client.get_run(run.info.run_id).data.params == recorded_config(config)[0]
    finally:
        campaign.release()
