"""A registered tiny policy loads with standard tools: pyfunc in and out of process (also where MLflow refuses
pickles), `mlflow models serve`, `selftrain export` (merged, loaded by plain transformers; adapter with its base
beside it), bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer

from configs.schema import TrackingConfig
from flows.cli import main as cli_main
from models.loading import load_policy
from models.pyfunc_policy import generate_text
from tasks.model_registry import register_policy
from tasks.records import ModelRef, sha256_dir
from tasks.tracking import end_run, start_run
from tasks.tracking_store import tracking_uri
from tests.cli import free_port

TEMPLATE = "Question: {prompt}\nAnswer:"
PROMPTS = ["What is 2 + 3?", "What is 7 - 4?"]
PYTHON = sys.executable
# Fails when the child imported any selftrain package: it must load with the libraries alone.
NO_SELFTRAIN = "assert not {m.split('.')[0] for m in sys.modules} & {'tasks', 'models', 'flows', 'configs'}"


@pytest.fixture(scope="module")
def registered(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A policy (tiny base + a LoRA with non-zero weights) registered as champion; its base folder is
    deleted afterwards, so every load below must use the base the version carries."""
    tmp = tmp_path_factory.mktemp("champion")
    base_dir = tmp / "base-copy"
    shutil.copytree(tiny_dir, base_dir)
    model, _ = load_policy(str(base_dir))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # B starts at zero; non-zero makes the adapter change the answers
    adapter = tmp / "adapter"
    peft.save_pretrained(str(adapter))
    peft_model, tokenizer = load_policy(str(base_dir), str(adapter))
    expected = generate_text(peft_model, tokenizer, PROMPTS, template=TEMPLATE, max_new_tokens=12)

    cfg = TrackingConfig(output_dir=str(tmp / "runs"), experiment="champion")
    run_id = start_run(cfg, "round-01", params={}, tags={})
    end_run(cfg, run_id)
    policy = ModelRef(source="tiny", base=str(base_dir), adapter=str(adapter), sha256=sha256_dir(adapter))
    base = ModelRef(source="tiny", base=str(base_dir), sha256="b" * 64)
    register_policy(
        cfg, "selftrain-unit", run_id, policy, base, accuracy=0.5, heldout_sha256="h", interval=(0.3, 0.7),
        template=TEMPLATE, max_new_tokens=12, example=PROMPTS[0],
    )  # fmt: skip
    shutil.rmtree(base_dir)
    return {"cfg": cfg, "uri": tracking_uri(cfg), "expected": expected, "tmp": tmp}


def _env(uri: str) -> dict[str, str]:
    # The venv's bin first, as in an activated venv: `mlflow models serve` starts `uvicorn` by name.
    path = f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": path}


def test_pyfunc_answers_a_dataframe_and_a_list(registered: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # The variable, not mlflow.set_tracking_uri: a global URI would outlive the test and redirect later clients.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    model = mlflow.pyfunc.load_model("models:/selftrain-unit@champion")
    signature = model.metadata.signature  # what MLflow's UI shows and `mlflow models serve` checks
    assert signature.inputs.to_dict() == signature.outputs.to_dict() == [{"type": "string", "required": True}]
    assert [(p.name, p.default) for p in signature.params.params] == [
        ("max_new_tokens", 12),
        ("temperature", 0.0),
        ("top_p", 1.0),
        ("seed", None),
    ]
    assert model.predict(PROMPTS) == registered["expected"]
    assert model.predict(pd.DataFrame({"prompt": PROMPTS})) == registered["expected"]
    assert model.predict(pd.DataFrame({"prompt": PROMPTS, "id": ["a", "b"]})) == registered["expected"]
    assert model.predict({"prompt": PROMPTS}) == registered["expected"]  # MLflow makes it one row holding the list
    with pytest.raises(ValueError, match="expected a 'prompt' column"):
        model.predict(pd.DataFrame({"question": PROMPTS}))
    # Under the one unnamed column MLflow hands over a DataFrame's first column alone: the error says so.
    with pytest.raises(ValueError, match=r"got columns \['id'\] \(MLflow passes .* put 'prompt' first\)$"):
        model.predict(pd.DataFrame({"id": ["a", "b"], "prompt": PROMPTS}))


def test_pyfunc_samples_when_given_a_temperature(registered: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    model = mlflow.pyfunc.load_model("models:/selftrain-unit@champion")
    prompts = PROMPTS * 4
    assert model.predict(prompts, params={"temperature": 0.0}) == registered["expected"] * 4  # 0 is greedy
    hot = {"temperature": 1.5, "seed": 3}
    sampled = model.predict(prompts, params=hot)
    assert sampled == model.predict(prompts, params=hot)  # a seed repeats its samples
    assert sampled != registered["expected"] * 4  # 8 samples at 1.5 from a 12-token tiny policy all greedy: no
    assert sampled != model.predict(prompts, params={**hot, "seed": 4})
    with pytest.raises(ValueError, match=r"^params: temperature must be >= 0 \(0 is greedy\), got -1.0$"):
        model.predict(PROMPTS, params={"temperature": -1.0})
    with pytest.raises(ValueError, match=r"^params: top_p must be in \(0, 1\], got 0.0$"):
        model.predict(PROMPTS, params={"temperature": 1.0, "top_p": 0.0})


def test_the_registry_describes_the_model_and_its_versions(registered: dict) -> None:
    client = mlflow.MlflowClient(registered["uri"])
    assert "LoRA adapter with its base" in client.get_registered_model("selftrain-unit").description
    (version,) = client.search_model_versions("name='selftrain-unit'")
    assert version.description.startswith(
        "Validation accuracy 0.500 [0.300, 0.700] (greedy). A LoRA adapter that carries its base;"
    )
    assert (version.tags["accuracy_ci_low"], version.tags["accuracy_ci_high"]) == ("0.3", "0.7")


def test_the_saved_requirements_are_public_releases(
    registered: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch's CPU wheel is "2.13.0+cpu" here: PyPI serves no local versions, so an environment MLflow builds
    # (`mlflow models serve` without --env-manager local, `build-docker`) could not install the pin.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    folder = Path(mlflow.artifacts.download_artifacts("models:/selftrain-unit@champion", dst_path=str(tmp_path)))
    pins = (folder / "requirements.txt").read_text().split()
    assert [pin.split("==")[0] for pin in pins if "==" in pin] == ["mlflow", "torch", "transformers", "peft", "pandas"]
    assert not [pin for pin in pins if "+" in pin], pins


def test_a_version_whose_base_is_gone_says_so(
    registered: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Gemma version references its 1.1 GB base by path; copied to a machine without it, loading names the
    # path and the way out rather than failing in transformers' hub lookup.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    folder = Path(mlflow.artifacts.download_artifacts("models:/selftrain-unit@champion", dst_path=str(tmp_path)))
    shutil.rmtree(folder / "artifacts" / "base")
    settings = json.loads((folder / "artifacts" / "policy.json").read_text())
    assert settings["base"]["source"] == "tiny" and not Path(settings["base"]["base"]).exists()
    with pytest.raises(FileNotFoundError, match=r"references its base model at .* --merged`, where the base is"):
        mlflow.pyfunc.load_model(str(folder))


def test_pyfunc_loads_in_a_process_without_selftrain(registered: dict, tmp_path: Path) -> None:
    code = (
        "import sys, json, mlflow; m = mlflow.pyfunc.load_model('models:/selftrain-unit@champion'); "
        f"print(json.dumps(m.predict({PROMPTS!r}))); {NO_SELFTRAIN}"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=tmp_path, env=_env(registered["uri"]), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == registered["expected"]


def test_pyfunc_loads_where_pickles_are_refused(
    registered: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow can refuse to unpickle a model (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false, a hardened server): a
    # model saved from code holds no pickle, so it loads there too.
    code = (
        "import sys, json, mlflow; m = mlflow.pyfunc.load_model('models:/selftrain-unit@champion'); "
        f"print(json.dumps(m.predict({PROMPTS!r}))); {NO_SELFTRAIN}"
    )
    env = {**_env(registered["uri"]), "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    done = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == registered["expected"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    folder = Path(mlflow.artifacts.download_artifacts("models:/selftrain-unit@champion", dst_path=str(tmp_path / "m")))
    assert not list(folder.rglob("*.pkl")), "a registered model holds a pickle"
    assert (folder / "code" / "pyfunc_policy.py").is_file()


def test_mlflow_models_serve_answers_http(registered: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    mlflow_cli = str(Path(PYTHON).with_name("mlflow"))
    command = [mlflow_cli, "models", "serve", "-m", "models:/selftrain-unit@champion", "--env-manager", "local"]
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=_env(registered["uri"]),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its uvicorn worker is killed with it, by process group
    )
    try:
        # The request body saved beside the model (its serving input example) is one the server answers.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
        example = Path(mlflow.artifacts.download_artifacts("models:/selftrain-unit@champion", dst_path=str(tmp_path)))
        assert json.loads((example / "serving_input_example.json").read_text()) == {"inputs": PROMPTS[:1]}
        body = (example / "serving_input_example.json").read_bytes()
        first = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        deadline, answer = time.monotonic() + 180, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(first, timeout=60) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(1)
        assert answer == {"predictions": registered["expected"][:1]}, answer
        body = json.dumps({"inputs": PROMPTS}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer == {"predictions": registered["expected"]}
        # Sampling params travel in the body as MLflow's scoring protocol has them, seeded alike in any process.
        hot = {"temperature": 1.5, "seed": 3}
        body = json.dumps({"inputs": PROMPTS * 4, "params": hot}).encode()
        sampled = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(sampled, timeout=60) as response:
            answer = json.loads(response.read())
        here = mlflow.pyfunc.load_model("models:/selftrain-unit@champion").predict(PROMPTS * 4, params=hot)
        assert answer == {"predictions": here} and here != registered["expected"] * 4
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_export_merged_loads_with_plain_transformers(registered: dict, tmp_path: Path) -> None:
    target = tmp_path / "merged"
    spec = "models:/selftrain-unit@champion"  # MLflow's model URI names it as NAME@ALIAS does
    assert cli_main(["export", spec, str(target), "--merged", "--tracking-uri", registered["uri"]]) == 0
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert not (target / "adapter_config.json").exists()
    assert repr(TEMPLATE) in (target / "README.md").read_text()  # how to load it, and the prompts' template
    code = (
        "import sys, json, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
        f"d = {str(target)!r}; tok = AutoTokenizer.from_pretrained(d); tok.padding_side = 'left'; "
        "m = AutoModelForCausalLM.from_pretrained(d); out = []\n"
        f"for p in {PROMPTS!r}:\n"
        f"    ids = tok({TEMPLATE!r}.format(prompt=p), return_tensors='pt')\n"
        "    new = m.generate(**ids, max_new_tokens=12, do_sample=False)[0, ids['input_ids'].shape[1]:]\n"
        "    out.append(tok.decode(new, skip_special_tokens=True).strip())\n"
        f"print(json.dumps(out)); {NO_SELFTRAIN}"
    )
    done = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, env=_env(""), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == registered["expected"]


def test_export_adapter_names_the_base_beside_it(registered: dict, tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    target.mkdir()  # an empty folder is a valid target
    assert cli_main(["export", "selftrain-unit/1", str(target), "--tracking-uri", registered["uri"]]) == 0
    config = json.loads((target / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base"
    assert (target / "base" / "config.json").is_file() and (target / "adapter_model.safetensors").is_file()
    model, tokenizer = load_policy(str(target / "base"), str(target))
    got = generate_text(model, tokenizer, PROMPTS, template=TEMPLATE, max_new_tokens=12)
    assert got == registered["expected"] and "base/" in (target / "README.md").read_text()
    # The base's tokenizer beside the adapter, as PEFT users save it: the folder alone gives the tokenizer.
    beside = AutoTokenizer.from_pretrained(str(target))
    assert beside(PROMPTS[0])["input_ids"] == tokenizer(PROMPTS[0])["input_ids"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "no registered model named nosuch or selftrain-nosuch"),
        ("unit@best", "selftrain-unit has no alias 'best' (versions [1], aliases ['champion'])"),
        ("unit/7", "selftrain-unit has no version 7"),
    ],
)
def test_export_bad_names_write_nothing(
    registered: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    target = tmp_path / "out" / "model"
    assert cli_main(["export", spec, str(target), "--tracking-uri", registered["uri"]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_export_into_a_non_empty_folder_writes_nothing(
    registered: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert cli_main(["export", "unit", str(tmp_path), "--tracking-uri", registered["uri"]]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert cli_main(["export", "unit", str(tmp_path / "x"), "--tracking-uri", missing]) == 2
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "x").exists()


def test_export_of_a_version_whose_files_are_gone_is_one_line_and_writes_nothing(
    registered: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The version's model folder deleted or moved in the store: one line naming the version, the missing artifact
    # and the store, exit status 2, not MLflow's traceback.
    from mlflow.utils.file_utils import local_file_uri_to_path

    (version,) = mlflow.MlflowClient(registered["uri"]).search_model_versions("name='selftrain-unit'")
    folder = Path(local_file_uri_to_path(version.source))
    moved = folder.with_name(folder.name + ".bak")
    folder.rename(moved)
    target = tmp_path / "out" / "model"
    try:
        code = cli_main(["export", "selftrain-unit/1", str(target), "--tracking-uri", registered["uri"]])
    finally:
        moved.rename(folder)
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert err.startswith(f"selftrain: error: selftrain-unit version 1 has no artifact {version.source}") and (
        err.endswith(f" in {registered['uri']} (was it deleted or moved?)\n")
    ), err
    assert err.count("\n") == 1
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # no temporary folder left either
