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
        "selftrain.config.scale.ray_address": "''",
        "selftrain.config.scale.connect_timeout": "10.0",
        "selftrain.config.storage.base": "''",
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
