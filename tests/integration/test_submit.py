"""`selftrain submit` against the served deployment: overrides merged onto its defaults, validated before
anything is submitted, the run followed to the end with --watch."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from tests.cli import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _submit(served: dict, cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    stack = served["stack"]
    env = {**cli_env, "PREFECT_API_URL": stack["prefect_api"], "MLFLOW_TRACKING_URI": stack["mlflow"]}
    return run_cli(["submit", *args], env, timeout=600, check=False)


def test_bad_submissions_are_one_line_errors(
    served: dict, api_settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    from flows.cli import main

    errors = {}
    with api_settings(served["stack"]["prefect_api"]), get_client(sync_client=True) as client:  # type: ignore[operator]
        before = {run.id for run in client.read_flow_runs()}
        for case, args in {
            "unknown": ["nosuch", "rounds=1"],
            "bad_field": ["it", "generate.kk=2"],
            "bad_value": ["it", "rounds=-1"],
        }.items():  # in this process: three CLI start-ups would cost ~30 s each on a loaded machine
            assert main(["submit", *args]) == 2, case
            errors[case] = capsys.readouterr().err
        # Through Prefect's API, a parameter the flow does not take is refused when the run is created (it used to
        # be accepted, and the run crashed with "Process exited with status code: 1").
        with pytest.raises(PrefectHTTPStatusError, match="'bogus' was unexpected"):
            client.create_flow_run_from_deployment(served["deployment"].id, parameters={"bogus": 1})
        # Other workers' tests create flow runs on the shared server meanwhile (the UI's and the API's campaigns of
        # this deployment, each with changes of its own; the work pool's; subflows), so the new runs are read, not
        # counted: none of this deployment may carry a refused override, or its defaults alone (overrides dropped).
        new = [run for run in client.read_flow_runs() if run.id not in before]
    defaults = served["deployment"].parameters["config"]
    sent = [(run.parameters or {}).get("config") or {} for run in new if run.deployment_id == served["deployment"].id]
    refused = [cfg for cfg in sent if cfg.get("rounds") == -1 or "kk" in (cfg.get("generate") or {}) or cfg == defaults]
    assert all(err.count("\n") == 1 for err in errors.values()), errors
    assert errors["unknown"].startswith("selftrain: error: deployment selftrain-campaign/nosuch: not found")
    assert errors["bad_field"].strip() == "selftrain: error: generate.kk: unknown field (did you mean 'k'?)"
    assert errors["bad_value"].startswith("selftrain: error: rounds:"), errors["bad_value"]
    assert refused == []  # nothing was submitted


def test_submit_merges_overrides_and_watches_to_the_end(
    served: dict, cli_env: dict[str, str], api_settings: object
) -> None:
    from prefect.client.orchestration import get_client

    done = _submit(served, cli_env, "it", "rounds=1", "generate.k=2", "--watch")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:], served["log"].read_text()[-3000:])
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith("Completed")
    with api_settings(served["stack"]["prefect_api"]), get_client(sync_client=True) as client:  # type: ignore[operator]
        run = client.read_flow_run(uuid.UUID(match.group(1)))
    sent = run.parameters["config"]
    assert run.parameters["fresh"] is False  # resume an unfinished campaign of the same config, as `run` does
    defaults = served["deployment"].parameters["config"]
    assert sent["rounds"] == 1 and sent["generate"]["k"] == 2
    assert defaults["rounds"] == 3 and defaults["generate"]["k"] != 2  # both changed from the defaults
    rest = {k: v for k, v in sent.items() if k not in ("rounds", "generate")}
    assert rest == {k: v for k, v in defaults.items() if k not in ("rounds", "generate")}
    assert {k: v for k, v in sent["generate"].items() if k != "k"} == {
        k: v for k, v in defaults["generate"].items() if k != "k"
    }


def test_a_watched_run_that_fails_ends_with_its_reason(
    served: dict, cli_env: dict[str, str], api_settings: object
) -> None:
    # The schema takes a file campaign whose file is missing (the file lives where the run runs): the served run's
    # preflight refuses it, and --watch prints that reason as `selftrain run` would, not only "Failed".
    from prefect.client.orchestration import get_client

    missing = f"/nonexistent-{uuid.uuid4().hex[:8]}/train.jsonl"
    args = ["it", "rounds=1", "prompts.source=file", f"prompts.train_path={missing}", "--watch", "--fresh"]
    done = _submit(served, cli_env, *args)
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-2000:])
    assert done.stdout.strip().splitlines()[-1].endswith("Failed")
    assert done.stderr.strip().splitlines()[-1] == f"selftrain: error: PromptFileError: {missing}: file not found"
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout
    with api_settings(served["stack"]["prefect_api"]), get_client(sync_client=True) as client:  # type: ignore[operator]
        assert client.read_flow_run(uuid.UUID(match.group(1))).parameters["fresh"] is True  # --fresh reaches the flow
