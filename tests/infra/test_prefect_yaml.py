"""infra/prefect.yaml deploys what `selftrain run` runs: configs/default.yaml as the defaults, the campaign flow,
the process pool, and 30 s heartbeats that flows/liveness.py and infra/zombie-automation.yaml are sized for.

Read as `prefect deploy` reads them (YAML, Prefect's own schema models); the deployment itself is made and run on
the server stack by tests/integration/test_work_pool.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from configs.loader import load_config
from configs.schema import CampaignConfig
from flows.liveness import STALE_BEATS

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _deployment() -> tuple[dict, dict]:
    project = yaml.safe_load((INFRA / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = project["deployments"]
    return project, deployment


def test_defaults_are_configs_default_yaml() -> None:
    _, deployment = _deployment()
    config = CampaignConfig.model_validate(deployment["parameters"]["config"])
    assert config == load_config("default", []), "infra/prefect.yaml's parameters drifted from configs/default.yaml"


def test_campaign_flow_on_the_process_pool_from_the_deploying_folder() -> None:
    from prefect.flows import Flow, load_flow_from_entrypoint

    project, deployment = _deployment()
    assert project["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]
    assert deployment["work_pool"]["name"] == "selftrain-pool"
    root = INFRA.parent
    path, _, name = deployment["entrypoint"].partition(":")
    assert (root / path).is_file()
    flow: Flow = load_flow_from_entrypoint(str(root / deployment["entrypoint"]))
    assert flow.name == "selftrain-campaign" and name == "campaign_flow"


def test_heartbeats_and_zombie_automation_agree() -> None:
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    _, deployment = _deployment()
    period = int(deployment["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    automation = AutomationCore.model_validate(
        yaml.safe_load((INFRA / "zombie-automation.yaml").read_text(encoding="utf-8"))
    )
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger) and trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.heartbeat" in trigger.expect
    assert trigger.within.total_seconds() == STALE_BEATS * period == 75  # selftrain's own rule, same moment
    watched = trigger.match_related  # only the pool deployment's runs: others beat every 180 s
    assert not isinstance(watched, list) and watched.get("prefect.resource.role") == ["tag"]
    assert watched.get("prefect.resource.id") == ["prefect.tag.selftrain-pool"]
    assert "selftrain-pool" in deployment["tags"]
    (action,) = automation.actions
    assert isinstance(action, ChangeFlowRunState) and action.state.value == "CRASHED"
