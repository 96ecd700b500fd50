"""The path a user takes in the Prefect UI, in headless Chromium: deployment -> Run -> Custom run -> change
fields in the typed form -> Submit -> the run completes, and it ran with the values typed in."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from playwright.sync_api import sync_playwright

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; playwright downloads nothing
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINAL = ("completed", "failed", "crashed", "cancelled")


def form_field(page, label: str, control: str = "input"):
    """The control of the schema-form property labelled `label` (innermost property with that label)."""
    return page.locator(
        f"xpath=//span[normalize-space()='{label} (Optional)']"
        "/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]"
        f"//{control}"
    ).first


def header_state(page) -> str:
    """The state shown in the flow-run page's heading badge, e.g. 'pending', 'running', 'completed'."""
    classes = page.locator(".page-heading-flow-run__meta .state-badge").first.get_attribute("class") or ""
    return next((c.removeprefix("state--") for c in classes.split() if c.startswith("state--")), "")


def test_custom_run_from_the_ui_completes_with_the_typed_values(
    served: dict, campaigns_started: dict, tmp_path, api_settings
) -> None:
    """`campaigns_started` only makes two API-started campaigns run alongside this one (see conftest)."""
    assert Path(CHROMIUM).exists(), "no Chromium: run `bash infra/bootstrap.sh --test` (installs Debian's chromium)"
    ui = served["stack"]["prefect_ui"]
    name = f"ui-{secrets.token_hex(3)}"  # the run name, and the campaign name (the flow names runs after it)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)  # fresh profile
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{ui}/deployments")
            page.get_by_role("link", name="it", exact=True).first.click()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            rounds = form_field(page, "Rounds")
            assert rounds.input_value() == "3"  # the served default
            page.locator(".flow-run-name-input input").fill(name)
            form_field(page, "Name", "textarea").fill(name)
            rounds.fill("1")
            form_field(page, "Learning Rate").fill("0.002")
            page.screenshot(path=str(tmp_path / "custom-run-form.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()
            page.wait_for_url("**/deployments/deployment/**")  # back on the deployment, its Runs tab
            page.screenshot(path=str(tmp_path / "submitted.png"))
            page.get_by_role("link", name=name, exact=True).first.click()  # the new run in the list
            page.wait_for_url("**/runs/flow-run/**")
            flow_run_id = page.url.rstrip("/").split("/")[-1].split("?")[0]
            deadline, polls = time.monotonic() + 420, 0
            while (state := header_state(page)) not in FINAL and time.monotonic() < deadline:
                page.wait_for_timeout(3000)
                polls += 1
                if polls % 10 == 0:
                    page.reload()  # the page polls the API by itself; a reload guards against a stalled poll
            page.screenshot(path=str(tmp_path / "flow-run.png"))
        finally:
            browser.close()
    assert state == "completed", (state, served["log"].read_text()[-3000:])

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with api_settings(served["stack"]["prefect_api"]), get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        same_name = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert len(same_name) == 1  # one Submit, one run
    config = run.parameters["config"]
    assert (run.name, config["name"], config["rounds"], config["train"]["learning_rate"]) == (name, name, 1, 0.002)
    mlflow = MlflowClient(tracking_uri=served["stack"]["mlflow"])
    experiment = mlflow.get_experiment_by_name("selftrain-tiny")
    parents = mlflow.search_runs([experiment.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    assert len(parents) == 1
    assert parents[0].data.params["rounds"] == "1" and parents[0].data.params["train.learning_rate"] == "0.002"
    assert parents[0].info.status == "FINISHED"
