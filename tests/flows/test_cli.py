"""The CLI on bad input: a short message naming the field, file or line, exit 2, no traceback, no runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from configs.loader import load_config
from flows.cli import main
from tests.cli import REPO, run_cli


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str]:
    code = main(["run", "configs/tiny.yaml", f"tracking.output_dir={tmp_path / 'runs'}", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "a rejected run must not create the MLflow store"
    return code, err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.learnig_rate=0.1", "train.learnig_rate: unknown field (did you mean 'learning_rate'?)"),
        ("generate.k=two", "generate.k: Input should be a valid integer"),
        ("rounds=0", "rounds: Input should be greater than or equal to 1"),
        ("generate.k=0", "generate.k: Input should be greater than or equal to 1"),
        ("generate.top_p=1.2", "generate.top_p: Input should be less than or equal to 1"),
    ],
)
def test_bad_config_values(capsys: pytest.CaptureFixture[str], tmp_path: Path, override: str, expected: str) -> None:
    code, err = _run(capsys, tmp_path, override)
    assert code == 2
    assert expected in err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "configs/tiny.yaml", "--fresh", "rounds=0"],
        ["serve", "configs/tiny.yaml", "--name", "x", "rounds=0"],
        ["judge-eval", "configs/tiny.yaml", "--judges", "pointwise", "rounds=0"],
    ],
)
def test_overrides_may_follow_a_flag(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    # The override reaches the config (its one-line error), not argparse's "unrecognized arguments".
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "rounds: Input should be greater than or equal to 1" in err and "unrecognized" not in err
    with pytest.raises(SystemExit) as exited:
        main(["run", "configs/tiny.yaml", "--no-such-flag", "rounds=0"])
    assert exited.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def _file_prompts(tmp_path: Path, train: Path, heldout: Path) -> list[str]:
    return ["prompts.source=file", f"prompts.train_path={train}", f"prompts.heldout_path={heldout}"]


def test_missing_prompt_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"prompt": "What is 1 plus 1?", "answer": "2"}) + "\n")
    code, err = _run(capsys, tmp_path, *_file_prompts(tmp_path, tmp_path / "nope.jsonl", heldout))
    assert code == 2
    assert "nope.jsonl" in err and "not found" in err


def test_malformed_row_names_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "What is 1 plus 1?"}\n{"prompt": "What is 2 plus 2?"\n')
    code, err = _run(capsys, tmp_path, *_file_prompts(tmp_path, train, train))
    assert code == 2
    assert "train.jsonl, line 2" in err


def test_missing_prompt_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("question,answer\nWhat is 1 plus 1?,2\n")
    code, err = _run(capsys, tmp_path, *_file_prompts(tmp_path, train, train))
    assert code == 2
    assert "train.csv" in err and "no 'prompt' column" in err


def test_the_installed_command_exits_non_zero_without_traceback(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli(
        ["run", "configs/tiny.yaml", "generate.k=0", f"tracking.output_dir={tmp_path}"],
        cli_env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "selftrain: error: generate.k: Input should be greater than or equal to 1 (got 0)"
    assert list(tmp_path.iterdir()) == []


def test_a_prefect_server_that_does_not_answer_is_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli(
        ["run", "configs/tiny.yaml", f"tracking.output_dir={tmp_path / 'runs'}"],
        {**cli_env, "PREFECT_API_URL": "http://127.0.0.1:1/api"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "selftrain: error: no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:1/api"
    )
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_validate_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "configs/tiny.yaml", "generate.k=6"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["generate"]["k"] == 6 and err == ""
    assert main(["validate", "configs/tiny.yaml", "rounds=1", "generate.k=6", "rounds=3"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["rounds"] == 3
    assert err == "selftrain: note: rounds is given 2 times (1, 3); the last one, 3, is taken\n"
    assert main(["schema"]) == 0
    assert "learning_rate: 0.002  # float. Peak learning rate" in capsys.readouterr().out


HEAVY = ("torch", "transformers", "peft", "trl", "mlflow")
# One process runs the quick commands and prints, after the command line, config error and schema, then after
# `validate` of the tiny and the default (packaged Gemma) configs, whose preflight draws the prompts through
# tasks.prompts, a Prefect task module, which of the libraries named on its command line it has imported.
QUICK_COMMANDS = """
import contextlib, io, json, sys
from flows.cli import main
loaded = lambda: sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for argv in (["--help"], ["reproduce", "--help"], ["judge-eval", "--help"]):
        with contextlib.suppress(SystemExit):
            main(argv)
    codes = [main(["schema"]), main(["run", "configs/tiny.yaml", "generate.k=0"])]
    before_validate = loaded()
    codes += [main(["validate", "configs/tiny.yaml"]), main(["validate"])]
print(json.dumps([codes, before_validate, loaded()]))
"""


def test_validate_names_a_prefect_api_url_that_is_no_url_and_leaves_the_server_to_run(cli_env: dict[str, str]) -> None:
    def validate(url: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["validate", "configs/tiny.yaml"], {**cli_env, "PREFECT_API_URL": url}, timeout=120, check=False)

    bad = validate("localhost:4200/api")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == (
        "selftrain: error: PREFECT_API_URL=localhost:4200/api: not an http(s) URL of a Prefect API; "
        "expected one like http://127.0.0.1:4200/api"
    )
    # A URL no server answers at is `run`'s check (the test above): validate checks inputs, not servers.
    assert validate("http://127.0.0.1:1/api").returncode == 0


def test_quick_commands_do_not_import_the_training_stack(cli_env: dict[str, str]) -> None:
    # `--help`, `schema`, `validate` and a config error take about a second: the subcommand modules import their
    # flows (Prefect, torch, transformers, PEFT, TRL, MLflow: 10+ s of CPU) only when a command runs one.
    proc = subprocess.run(
        [sys.executable, "-c", QUICK_COMMANDS, "prefect", *HEAVY],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes, before_validate, after_validate = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == [0, 2, 0, 0]
    assert before_validate == [], f"--help, schema or a config error imported {before_validate}"
    assert [m for m in after_validate if m in HEAVY] == [], f"validate imported {after_validate}"


def test_an_ablation_name_that_is_no_safe_folder_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablation", "configs/tiny.yaml", "--name", "my abl/x"]) == 2
    assert capsys.readouterr().err.startswith("selftrain: error: --name 'my abl/x': 1-100 characters")


def test_an_override_given_as_an_ablation_arm_says_to_pass_it_with_set(capsys: pytest.CaptureFixture[str]) -> None:
    # Taken as an arm, `rounds=1` was the default config with one round: "arms differ in 'rounds'".
    assert main(["ablation", "configs/tiny.yaml", "rounds=1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "selftrain: error: rounds=1: an override, not an arm config (no such file); pass overrides with "
        "--set rounds=1 (applied to every arm)\n"
    )


def test_an_ablation_names_the_arm_a_config_error_is_in_and_the_arms_that_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # By default every configs/experiments/*.yaml is an arm: the error says which one to open.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrounds: abc\n")
    assert main(["ablation", "configs/experiments/sft-verified.yaml", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"selftrain: error: arm {bad}: rounds: Input should be a valid integer")
    verified = Path("configs/experiments/sft-verified.yaml").read_text()
    assert "\nrounds: 3\n" in verified
    longer = tmp_path / "longer.yaml"
    longer.write_text(verified.replace("name: ", "name: long-", 1).replace("\nrounds: 3\n", "\nrounds: 4\n"))
    arms = ["configs/experiments/sft-verified.yaml", "configs/experiments/dpo.yaml", str(longer)]
    assert main(["ablation", *arms]) == 2
    names = [load_config(arm).name for arm in arms]
    assert capsys.readouterr().err == (
        f"selftrain: error: arms differ in 'rounds' ({names[0]}, {names[1]} against {names[2]}): an ablation compares "
        "recipes on the same prompts and seeds\n"
    )


def test_submit_without_a_deployment_names_only_the_deployment_as_required(capsys: pytest.CaptureFixture[str]) -> None:
    # The overrides are optional: argparse listed a `*` positional without a default as required too.
    with pytest.raises(SystemExit) as exited:
        main(["submit"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.endswith("selftrain submit: error: the following arguments are required: deployment\n"), err
