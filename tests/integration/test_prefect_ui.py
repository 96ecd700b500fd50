"""The path a user takes in the Prefect UI, in headless Chromium: deployment -> Run -> Custom run -> change
fields in the typed form -> Submit -> the run completes, and it ran with the values typed in; then the round's
flow run -> Artifacts tab -> the round table, whose values are the round's MLflow metrics.

With `SELFTRAIN_SCREENSHOT=path.png` the round table's page is saved there (README: docs/prefect-artifacts.png).
"""

from __future__ import annotations

import os
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


def submit(page, name: str, tmp_path: Path) -> str:
    """Click Submit, wait for the UI's request that creates the run and for its toast "<name> scheduled", and return
    the new flow run's id. (The toast's "View run" button is animated and covered while it slides in, and the
    deployment page's run list may still be loading, so neither is clicked.) On a timeout, fail with what the browser
    saw: its URL, the API calls made after the click, messages and toasts shown, console errors (and save a
    screenshot)."""
    calls: list[str] = []
    page.on("response", lambda r: calls.append(f"{r.request.method} {r.url.split('/api', 1)[-1]} -> {r.status}"))
    page.on("requestfailed", lambda r: calls.append(f"{r.method} {r.url.split('/api', 1)[-1]} failed: {r.failure}"))
    page.on("console", lambda m: calls.append(f"console.{m.type}: {m.text[:300]}") if m.type == "error" else None)
    try:
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/create_flow_run"), timeout=120_000
        ) as created:
            page.get_by_role("button", name="Submit").click()
        page.locator(".toast-flow-run-create").filter(has_text=f"{name} scheduled").first.wait_for()
    except Exception as error:
        page.screenshot(path=str(tmp_path / "submit-timeout.png"), full_page=True)
        shown = page.locator(".p-message, .p-toast__card, .p-label__message").all_inner_texts()
        raise AssertionError(
            f"{type(error).__name__} after Submit, at {page.url}; messages shown: {shown}; "
            f"after the click: {calls[-30:]}"
        ) from None
    page.screenshot(path=str(tmp_path / "submitted.png"))
    assert created.value.status == 201, (created.value.status, created.value.text())
    return str(created.value.json()["id"])


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
            flow_run_id = submit(page, name, tmp_path)
            page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
            deadline, polls = time.monotonic() + 420, 0
            while (state := header_state(page)) not in FINAL and time.monotonic() < deadline:
                page.wait_for_timeout(3000)
                polls += 1
                if polls % 10 == 0:
                    page.reload()  # the page polls the API by itself; a reload guards against a stalled poll
            page.screenshot(path=str(tmp_path / "flow-run.png"))
            assert state == "completed", (state, served["log"].read_text()[-3000:])
            shown = round_table_in_the_ui(page, ui, served["stack"]["prefect_api"], name, api_settings, tmp_path)
        finally:
            browser.close()

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
    rounds = mlflow.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert len(rounds) == 1
    metrics = rounds[0].data.metrics
    assert {key: float(value) for key, value in shown.items()} == pytest.approx(
        {key: metrics[key] for key in shown}, abs=5e-5
    )  # the UI's round table shows the round's MLflow metrics (to 4 decimals)
    assert {"val/accuracy", "select/rows", "gate/promoted"} <= set(shown)


def round_table_in_the_ui(page, ui: str, api_url: str, name: str, api_settings, tmp_path: Path) -> dict[str, str]:
    """Open round 1's flow run, its Artifacts tab and the round table's card; return the table's `metric -> value`
    cells as shown (saved as a screenshot when SELFTRAIN_SCREENSHOT names a file). Test metrics are on the
    campaign's run, so the returned cells leave them out."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with api_settings(api_url), get_client(sync_client=True) as client:
        (round_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"{name}-round-1"]))
        )
    page.goto(f"{ui}/runs/flow-run/{round_run.id}")
    page.get_by_text("Artifacts", exact=True).first.click()  # the flow run page's tab
    card = page.locator(".artifact-card").filter(has=page.get_by_text(f"{name}-round-1", exact=True))
    card.first.wait_for()
    for key in (f"{name}-round-1-gate", f"{name}-round-1-mlflow"):  # the gate's decision, the MLflow run's link
        page.locator(".artifact-card").filter(has=page.get_by_text(key, exact=True)).first.wait_for()
    page.screenshot(path=str(tmp_path / "artifacts-tab.png"), full_page=True)
    card.first.click()  # the table artifact's page renders the table
    page.locator("tbody td", has_text="validation accuracy").first.wait_for()
    cells = {}
    for row in page.locator("tbody tr").all():
        texts = [text.strip() for text in row.locator("td").all_inner_texts()]
        if len(texts) == 3 and not texts[0].startswith("test/"):
            cells[texts[0]] = texts[2]
    if os.environ.get("SELFTRAIN_SCREENSHOT"):
        page.screenshot(path=os.environ["SELFTRAIN_SCREENSHOT"], clip={"x": 0, "y": 0, "width": 1400, "height": 720})
    return cells
