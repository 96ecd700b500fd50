"""Pre-run checks: every input the config points at is checked before any run or folder exists.

Each class of bad input gives one line naming the field or file and the reason, exit 2, no traceback,
and nothing recorded: no MLflow store, no campaign folder.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from configs.loader import load_config
from configs.schema import CampaignConfig
from flows.cli import main
from flows.preflight import (
    PreflightError,
    check_answer_length,
    check_chat_template,
    check_model_dir,
    check_prepared_model,
    check_solutions_agree,
    preflight,
    reachable,
    safetensors_problem,
)
from tasks.filters import GOLD_TARGET
from tasks.judging.reference_bank import BankError
from tasks.prompt_files import PromptFileError, load_prompt_file
from tests.cli import free_port


def _rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path, *overrides: str, command: str = "run") -> str:
    """Run `selftrain run` on the tiny config; assert exit 2, one line, no traceback, nothing written."""
    out = tmp_path / "runs"
    args = [command, "configs/tiny.yaml", f"tracking.output_dir={out}", *overrides]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("selftrain: error: ") and err.count("\n") == 1, err
    assert not out.exists(), "a rejected run must not create its output folder"
    return err.removeprefix("selftrain: error: ").strip()


def _copy_model(tiny_dir: Path, to: Path) -> Path:
    shutil.copytree(tiny_dir, to)
    return to


def test_local_model_directory_contents(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_dir: Path) -> None:
    model = _copy_model(tiny_dir, tmp_path / "model")
    local = ["model.source=local", f"model.name={model}"]
    preflight(load_config("tiny", local))  # the real thing passes

    (model / "config.json").write_text("{not json")
    assert "model.name=" in _rejected(capsys, tmp_path, *local)
    assert _rejected(capsys, tmp_path, *local).endswith(
        "config.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert _rejected(capsys, tmp_path, *local).endswith(
        "config.json names no model_type, so transformers cannot load it"
    )
    shutil.copy(tiny_dir / "config.json", model / "config.json")

    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    assert f"model.safetensors is truncated ({len(data) // 2:,} bytes" in _rejected(capsys, tmp_path, *local)
    weights.write_bytes(b"\0" * len(data))
    assert _rejected(capsys, tmp_path, *local).endswith(
        "model.safetensors is not a safetensors file (unreadable header)"
    )
    weights.unlink()
    assert _rejected(capsys, tmp_path, *local).endswith(
        "no weights (model.safetensors, pytorch_model.bin or a sharded index)"
    )
    weights.write_bytes(data)

    (model / "tokenizer.json").unlink()
    assert "no tokenizer files" in _rejected(capsys, tmp_path, *local)
    assert _rejected(capsys, tmp_path, "model.source=local", f"model.name={tmp_path / 'nope'}").endswith(
        "nope: no such directory"
    )


def test_safetensors_header_check_accepts_the_real_file(tiny_dir: Path) -> None:
    assert safetensors_problem(tiny_dir / "model.safetensors") is None


def test_judge_and_cascade_models_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"^judge.model.name=.*: no such directory$"):
        preflight(load_config("tiny", ["judge.model.source=local", f"judge.model.name={tmp_path / 'x'}"]))
    with pytest.raises(PreflightError, match=r"^judge.reward_model=.*: is a file, not a model directory$"):
        (tmp_path / "rm").write_text("")
        preflight(load_config("tiny", ["judge.kind=reward-model", f"judge.reward_model={tmp_path / 'rm'}"]))


def test_hub_model_offline_without_cache_says_so_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    message = _rejected(capsys, tmp_path, "model.source=hub", "model.name=nobody/no-such-model")
    assert message.startswith(
        "model.name=nobody/no-such-model: HF_HUB_OFFLINE is set and nobody/no-such-model is "
        "not in the local Hugging Face cache"
    )
    assert time.monotonic() - started < 60
    assert "not a local path, nor a valid hub id" in _rejected(capsys, tmp_path, "model.source=hub", "model.name=a//b")


def test_unreachable_hub_is_reported_within_seconds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed local port stands in for an offline machine: refused at once, no network used.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    message = _rejected(capsys, tmp_path, "model.source=hub", "model.name=nobody/no-such-model")
    assert message == (
        "offline: cannot reach the Hugging Face hub (http://127.0.0.1:9) for model.name=nobody/no-such-model"
    )


def test_reachability_probe_is_bounded() -> None:
    # A server that accepts connections and never answers: the probe gives up after its timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        assert not reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", 0.5)
        assert time.monotonic() - started < 2


def test_tracking_uri_scheme(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _rejected(capsys, tmp_path, "tracking.tracking_uri=foo://host/x")
    assert message.startswith("tracking.tracking_uri=foo://host/x: unknown tracking URI scheme 'foo' (MLflow knows ")
    assert "postgresql" in message and "sqlite" in message
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert "MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true" in _rejected(
        capsys, tmp_path, f"tracking.tracking_uri={tmp_path / 'mlruns'}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    assert _rejected(capsys, tmp_path).startswith("MLFLOW_TRACKING_URI=bogus://x: unknown tracking URI scheme")
    port = free_port()  # a port nothing listens on
    message = _rejected(capsys, tmp_path, f"tracking.tracking_uri=http://127.0.0.1:{port}")
    assert message.startswith(f"tracking.tracking_uri=http://127.0.0.1:{port}: no MLflow server answers there")


def test_output_folder_that_is_a_file_or_cannot_be_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("")
    assert main(["run", "configs/tiny.yaml", f"tracking.output_dir={blocker}"]) == 2
    assert capsys.readouterr().err == f"selftrain: error: tracking.output_dir={blocker}: is a file, not a folder\n"
    assert main(["run", "configs/tiny.yaml", f"tracking.output_dir={blocker}/sub"]) == 2
    assert capsys.readouterr().err.endswith(f"cannot be created, {blocker} is a file\n")
    assert blocker.read_text() == ""
    sqlite = f"tracking.tracking_uri=sqlite:///{blocker}/mlflow.db"
    assert "is a file" in _rejected(capsys, tmp_path / "other", sqlite)
    # A sqlite URL SQLAlchemy cannot read, and a file store under a file: one line each, not a traceback.
    for bad in ("sqlite:/x.db", "sqlite:x.db"):
        assert _rejected(capsys, tmp_path / "other", f"tracking.tracking_uri={bad}") == (
            f"tracking.tracking_uri={bad}: not a sqlite URL (expected sqlite:///<folder>/mlflow.db)"
        )
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for store in (f"{blocker}/mlruns", f"file://{blocker}/mlruns"):
        message = _rejected(capsys, tmp_path / "other", f"tracking.tracking_uri={store}")
        assert (
            message
            == f"tracking.tracking_uri={store} (folder {blocker}/mlruns): cannot be created, {blocker} is a file"
        )
    for base in (f"{blocker}/sub", f"file://{blocker}/sub"):  # storage.base, a folder here, is checked the same way
        assert main(["validate", "configs/tiny.yaml", f"storage.base={base}"]) == 2
        expected = f"selftrain: error: storage.base={base}: cannot be created, {blocker} is a file\n"
        assert capsys.readouterr().err == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["name=../../../x"], "name: '../../../x' is not a safe name for folders and MLflow"),
        (["tracking.experiment="], "tracking.experiment: must not be empty"),
        (["prompts.template='Question: {{prompt}} Answer:'"], "prompts.template: must contain the placeholder"),
        (["prompts.template='{question}'"], "prompts.template: unknown placeholder {question}"),
        (["prompts.template='Q {prompt!z}'"], "prompts.template: {prompt} cannot be filled in (Unknown conversion"),
        (["generate.hint='{prompt} {answer} {answer.x}'"], "generate.hint: only {prompt} and {answer} may be"),
        (["select.filters=[{kind: dsir, share: 0.2, share: 0.9}]"], "override select.filters: duplicate key 'share'"),
        (["tracking.output_dir=~nosuchuser-st/runs"], "~nosuchuser-st names no user with a home directory"),
        (["tracking.tracking_uri=http://[::1"], "tracking.tracking_uri=http://[::1: Invalid IPv6 URL"),
        (["judge.cascade.model.source=hub"], "judge.cascade.model: name is required when source is 'hub'"),
        (["select.threshold=.nan"], "select.threshold: Input should be a finite number (got nan)"),
        (["train.epochs=.inf"], "train.epochs: Input should be a finite number (got inf)"),
        (["train.target_modules=[]"], "train.target_modules: name at least one module"),
        (["rounds=yes"], "rounds: expected a number, got the boolean true"),
        (["generate.k=100000"], "generate.k=100000 is above its sane bound of 64"),
        (
            ["prompts.min_operand=1", "prompts.max_operand=1", "prompts.operations=[add]"],
            "prompts.validation_size=128: could not draw 128 distinct validation problems with operands 1..1; widen",
        ),
    ],
)
def test_run_validate_and_serve_refuse_the_same_inputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, overrides: list[str], expected: str
) -> None:
    assert expected in _rejected(capsys, tmp_path, *overrides)
    assert expected in _rejected(capsys, tmp_path, *overrides, command="validate")
    assert expected in _rejected(capsys, tmp_path, *overrides, command="serve")  # before looking for a server


def test_a_huge_prompt_in_a_file_is_refused_unless_allowed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"id": "big", "prompt": "x " * 10_000, "answer": "1"}) + "\n")
    validation = tmp_path / "validation.jsonl"
    validation.write_text(json.dumps({"prompt": "What is 1 plus 1?", "answer": "2"}) + "\n")
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    assert _rejected(capsys, tmp_path, *files) == (
        f"{train}, line 1: prompt 'big' is 20,000 characters long, above the sane bound of 16,000; "
        "set limits.allow_large=true to allow it"
    )
    # Allowed, it still has to fit the tiny model's 256 positions.
    message = _rejected(capsys, tmp_path, *files, "limits.allow_large=true")
    assert message.startswith(f"{train}, line 1: the longest train prompt (id 'big') is ")
    assert message.endswith("with generate.max_new_tokens=24 it exceeds the model's context of 256 positions")


def test_prompt_length_against_a_local_models_context(tmp_path: Path, tiny_dir: Path) -> None:
    model = _copy_model(tiny_dir, tmp_path / "model")
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"prompt": "What is 1 plus 1? " * 10, "answer": "2"}) + "\n")
    validation = tmp_path / "validation.jsonl"
    validation.write_text(json.dumps({"prompt": "What is 2 plus 2? " * 10, "answer": "4"}) + "\n")
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    config = load_config("tiny", ["model.source=local", f"model.name={model}", *files])
    preflight(config)  # ~70 tokens + 24 fit 256 positions
    with pytest.raises(PreflightError, match=r"evaluate.max_new_tokens=250 it exceeds the model's context of 256"):
        preflight(config.model_copy(update={"evaluate": config.evaluate.model_copy(update={"max_new_tokens": 250})}))


def test_a_prompt_too_long_for_the_context_is_named_by_file_line_and_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    train = _jsonl(tmp_path / "train.jsonl", [{"prompt": "What is 1 plus 1?", "answer": "2"}])
    rows = [{"prompt": "What is 2 plus 2?", "answer": "4"}, {"prompt": "What is 2+2? " * 300, "answer": "4"}]
    validation = _jsonl(tmp_path / "validation.jsonl", rows)
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    message = _rejected(capsys, tmp_path, *files, command="validate")
    assert message.startswith(f"{validation}, line 2: the longest validation prompt (id 'validation-1') is ")
    assert message.endswith("with evaluate.max_new_tokens=24 it exceeds the model's context of 256 positions")


def test_a_working_longer_than_the_new_tokens_is_refused(tmp_path: Path, tiny_dir: Path) -> None:
    # The digit working's carry ("1 + 1 + 1 = 3.") makes an answer 41 tokens (one per digit): cut shorter, its final
    # "The answer is N." never comes, and the strict check fails it however right it is.
    model = _copy_model(tiny_dir, tmp_path / "model")
    local = ["model.source=local", f"model.name={model}", "prompts.max_operand=20"]  # two-digit operands

    def digits(generate: int, evaluate: int) -> CampaignConfig:
        lengths = [f"generate.max_new_tokens={generate}", f"evaluate.max_new_tokens={evaluate}"]
        return load_config("tiny", [*local, "prompts.working=digits", *lengths])

    with pytest.raises(PreflightError, match=r"^generate.max_new_tokens=24: \d+ of 128 worked answers of the train "):
        check_answer_length(digits(24, 41))
    evaluate = r"^evaluate.max_new_tokens=40: \d+ of 320 worked answers .* is 41 tokens\), .* at least 41$"
    with pytest.raises(PreflightError, match=evaluate):
        check_answer_length(digits(41, 40))
    check_answer_length(digits(41, 41))
    check_answer_length(load_config("tiny", local))  # plain answers fit the tiny config's 24 new tokens
    with pytest.raises(PreflightError, match=r"^generate.max_new_tokens=4: \d+ of 128 worked answers .* in prompts.w"
                       r"orking=plain are longer"):  # fmt: skip
        check_answer_length(load_config("tiny", [*local, "generate.max_new_tokens=4"]))
    # The few-shot baseline's examples in a longer working than the campaign's: the base's answers in it must fit.
    bar = ["evaluate.few_shot_baseline=true", "evaluate.few_shot_working=digits", "prompts.few_shot=3"]
    refused = r"^evaluate.max_new_tokens=24: \d+ of 192 worked answers of the test/ood problems in evaluate.few_shot"
    with pytest.raises(PreflightError, match=refused) as cut:
        check_answer_length(load_config("tiny", [*local, *bar]))
    assert re.search(r"\(the longest, (a test|an OOD) answer, is \d+ tokens\)", str(cut.value))  # its text not shown
    check_answer_length(load_config("tiny", [*local, *bar, "evaluate.max_new_tokens=41"]))
    # Two-step problems (prompts.two_step_share) in the working: a training row cut at train.max_length loses its
    # final answer too.
    chained = [*local, "prompts.working=digits", "prompts.two_step_share=0.5"]
    chained += ["generate.max_new_tokens=80", "evaluate.max_new_tokens=41"]
    with pytest.raises(PreflightError, match=r"^train.max_length=64: \d+ of \d+ training rows .* at least \d+$"):
        check_answer_length(load_config("tiny", [*chained, "train.max_length=64"]))
    check_answer_length(load_config("tiny", [*chained, "train.max_length=256"]))


def test_a_scored_answer_the_answer_pattern_cannot_read_is_refused(tmp_path: Path) -> None:
    # Under the default pattern (an integer) a validation answer "ten" could never earn its credit.
    train = _jsonl(tmp_path / "train.jsonl", [{"prompt": "What is 5 plus 5?", "answer": "10"}])
    validation = _jsonl(
        tmp_path / "validation.jsonl",
        [
            {"id": "v1", "prompt": "What is five plus five?", "answer": "ten"},
            {"prompt": "What is 1 plus 1?", "answer": 2},
        ],
    )
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    refused = (
        f"{validation}: 1 of 2 scored answers (line 1, id 'v1': 'ten') are not what judge.answer_pattern reads as an "
        "answer, so no response could earn their credit; write them as it reads one (the default pattern: an "
        "integer), or set judge.answer_pattern"
    )
    with pytest.raises(PreflightError) as caught:
        preflight(load_config("tiny", files))
    assert str(caught.value) == refused
    # A pattern that reads words takes it; one that asks for another form ("#### N") leaves the set unchecked.
    words = r"judge.answer_pattern='[Tt]he answer is (\w+)\.\s*$'"
    preflight(load_config("tiny", [*files, words]))
    _jsonl(
        validation,
        [
            {"id": "v1", "prompt": "What is five plus five?", "answer": "ten"},
            {"id": "v2", "prompt": "p", "answer": "2.5"},
        ],
    )
    with pytest.raises(
        PreflightError, match=r"validation.jsonl: 1 of 2 scored answers \(line 2, id 'v2': '2.5'\) are not"
    ):
        preflight(load_config("tiny", [*files, words]))
    preflight(load_config("tiny", [*files, r"judge.answer_pattern='#### (-?[0-9]+)\s*$'"]))
    # An extra set's answers too, and the built-in task's campaign with it.
    bench = _jsonl(tmp_path / "bench.jsonl", [{"id": "b", "prompt": "Half of 7?", "answer": 3.5}])
    with pytest.raises(
        PreflightError, match=r"bench.jsonl: 1 of 1 scored answers \(line 1, id 'b': '3.5'\) are not what"
    ):
        preflight(load_config("tiny", [f"evaluate.extra_sets=[{{name: bench, path: {bench}}}]"]))


def test_the_tiny_models_answers_are_measured_without_building_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_dir: Path, tiny_build_args: dict
) -> None:
    # The tiny model's tokenizer is trained again from its corpus (a twentieth of a second), as its build trains
    # it: the length checks run for model.source=tiny, and neither they nor the context check build the model.
    from tokenizers import Tokenizer

    from flows.preflight import answer_tokenizer, check_context
    from models.tiny import train_tokenizer

    texts = ["Question: What is 14 plus 18?\nAnswer: 4 + 8 = 12. 1 + 1 + 1 = 3. The answer is 32.", "héllo, wörld"]
    built = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    again = train_tokenizer(tiny_build_args["corpus"])
    assert [e.ids for e in again.encode_batch(texts)] == [e.ids for e in built.encode_batch(texts)]

    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))
    digits = ["prompts.working=digits", "prompts.max_operand=20"]
    assert answer_tokenizer(load_config("tiny")) is not None
    with pytest.raises(PreflightError, match=r"^evaluate.max_new_tokens=24: \d+ of 320 worked answers .* at least 41$"):
        check_answer_length(load_config("tiny", [*digits, "generate.max_new_tokens=41"]))
    check_answer_length(load_config("tiny", [*digits, "generate.max_new_tokens=41", "evaluate.max_new_tokens=41"]))
    long_template = 'prompts.template="' + "Think it through. " * 12 + '{prompt}"'
    check_context(load_config("tiny", [long_template]))  # the byte bound does not fit: the tokenizer counts
    assert not (tmp_path / "cache").exists()


def test_a_prompt_too_long_for_the_context_is_one_error_with_no_tokenizer_warning() -> None:
    import logging

    from flows.preflight import check_context

    # transformers' handler holds the stderr of the moment it was made, which pytest's capture never sees:
    # listen on its logger instead.
    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("transformers").addHandler(listener)
    too_long = 'prompts.template="' + "Think it through. " * 60 + '{prompt}"'
    try:
        with pytest.raises(PreflightError, match=r"^prompts: the longest train prompt \(id '[^']+'\) is \d+ tokens as"):
            check_context(load_config("tiny", [too_long]))
    finally:
        logging.getLogger("transformers").removeHandler(listener)
    assert not [r for r in records if "sequence length" in r.getMessage()]  # transformers' warning of the same fact


def test_a_prompt_files_solutions_longer_than_the_new_tokens_or_max_length_are_refused(
    tmp_path: Path, tiny_dir: Path
) -> None:
    # A file's worked solutions are what the policy learns to write: cut, they lose their final answer.
    model = _copy_model(tiny_dir, tmp_path / "model")
    solution = " 12 + 9 = 21. 21 - 4 = 17. The answer is 17."
    rows = [{"prompt": f"Tom has 12 apples and gets 9 more, then gives {i} away. How many?", "answer": "17"}
            for i in range(4)]  # fmt: skip
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(json.dumps({**row, "solution": solution}) + "\n" for row in rows))
    validation.write_text("".join(json.dumps(row) + "\n" for row in rows))  # no solutions: nothing to measure
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    local = ["model.source=local", f"model.name={model}", *files, "prompts.train_size=4", "prompts.validation_size=4"]
    local += ["generate.max_new_tokens=48", "evaluate.max_new_tokens=48"]

    def config(*overrides: str) -> CampaignConfig:
        return load_config("tiny", [*local, *overrides])

    check_answer_length(config())
    with pytest.raises(PreflightError, match=r"^generate.max_new_tokens=8: 4 of 4 worked answers of the train "
                       r"problems in the prompt files' solution column are longer .* at least \d+$"):  # fmt: skip
        check_answer_length(config("generate.max_new_tokens=8"))
    with pytest.raises(PreflightError, match=r"^train.max_length=24: 4 of 4 training rows .* at least \d+$"):
        check_answer_length(config("train.max_length=24"))


def test_target_modules_the_model_lacks_are_refused_naming_the_ones_it_has(tmp_path: Path, tiny_dir: Path) -> None:
    from safetensors import safe_open

    from models.tiny import MODULE_NAMES

    with safe_open(str(tiny_dir / "model.safetensors"), "pt") as weights:  # the list is the model's own
        assert set(MODULE_NAMES) == {key.rsplit(".", 1)[0] for key in weights.keys()}  # noqa: SIM118
    model = _copy_model(tiny_dir, tmp_path / "model")
    for source in (["model.source=tiny"], ["model.source=local", f"model.name={model}"]):
        preflight(load_config("tiny", [*source, "train.target_modules=[q_proj,v_proj]"]))
        preflight(load_config("tiny", [*source, "train.target_modules=.*_proj"]))  # PEFT's regular expression
        with pytest.raises(PreflightError, match=r"^train.target_modules=\['qproj'\]: no module of the model is named "
                           r"so; its modules end in down_proj, .* v_proj, or use 'all-linear'$"):  # fmt: skip
            preflight(load_config("tiny", [*source, "train.target_modules=[qproj]"]))
        with pytest.raises(PreflightError, match=r"^train.target_modules=q_proj: .* \(a single name is a regular"):
            preflight(load_config("tiny", [*source, "train.target_modules=q_proj"]))


def test_a_training_file_that_gives_nothing_to_train_on_is_refused(tmp_path: Path) -> None:
    # Every round would run and train nothing: no answers for the verifier, no row that can be a gold row.
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?"}) + "\n" for i in range(4)))
    rows = [{"prompt": f"What is {i} plus 2?", "answer": "3"} for i in range(4)]
    validation.write_text("".join(json.dumps(row) + "\n" for row in rows))
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    files += ["prompts.train_size=4", "prompts.validation_size=4", "prompts.few_shot=0"]
    with pytest.raises(PreflightError, match=r"^prompts.train_path=.*: no row has an 'answer', and judge.kind=verif"):
        preflight(load_config("tiny", files))
    gold = [*files, "judge.kind=pointwise", "select.gold_examples=2"]
    with pytest.raises(PreflightError, match=r"^select.gold_examples=2: no row of prompts.train_path=.* to be a gold"):
        preflight(load_config("tiny", gold))
    preflight(load_config("tiny", [*files, "judge.kind=pointwise"]))  # a judge that needs no answers, no gold rows
    train.write_text("".join(json.dumps({"prompt": f"What is {i} plus 1?", "answer": i + 1}) + "\n" for i in range(4)))
    preflight(load_config("tiny", gold))
    with pytest.raises(PreflightError, match=r"has a 'solution' that shows right working \(judge.require_work"):
        preflight(load_config("tiny", [*gold, "judge.require_work=true"]))  # a bare answer shows no working


def test_a_training_file_with_an_empty_carved_split_is_refused_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # r0 hashes outside the carved fifth: with no validation file the run would record a campaign, then crash
    # scoring an empty validation split.
    train = _jsonl(tmp_path / "train.jsonl", [{"id": "r0", "prompt": "What is 1 plus 1?", "answer": "2"}])
    files = ["prompts.source=file", f"prompts.train_path={train}"]
    for command in ("run", "validate"):
        message = _rejected(capsys, tmp_path, *files, command=command)
        assert message.startswith(f"prompts.train_path={train}: the validation split carved from it is empty")
    # r1, r3 and r5 hash into it: the verifier's training split keeps only the unanswered row.
    rows = [{"id": f"r{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in (1, 3, 5)]
    _jsonl(train, [*rows, {"id": "r0", "prompt": "What is 0 plus 1?"}])
    with pytest.raises(PreflightError) as caught:
        preflight(load_config("tiny", files))
    assert str(caught.value) == (
        f"prompts.train_path={train}: all 3 answered rows went to the validation split carved from it (a fifth of the "
        "answered rows chosen by a hash of each row's problem, or of its id where it has none), so training has "
        "none, and judge.kind=verifier scores each sample against an answer: set prompts.validation_path (then "
        "every row of this file trains) or add answered rows"
    )


def test_grpo_with_fewer_answered_training_rows_than_a_generation_batch_is_refused(tmp_path: Path) -> None:
    # TRL forms no generation batch from fewer prompts: every round would train nothing and the run exit 0.
    rows = [{"id": f"t{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(3)]
    train = _jsonl(tmp_path / "train.jsonl", [*rows, {"id": "t9", "prompt": "What is 9 plus 1?"}])
    validation = _jsonl(tmp_path / "validation.jsonl", [{"prompt": "What is 1 plus 2?", "answer": "3"}])
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    grpo = [*files, "train.method=grpo", "judge.require_work=false"]
    with pytest.raises(PreflightError) as caught:
        preflight(load_config("tiny", grpo))
    assert str(caught.value) == (
        f"prompts.train_path={train}: train.method=grpo samples 4 prompts per generation batch "
        "(train.grpo.generation_batch_size or train.batch_size over train.grpo.num_generations), and the training "
        "split has 3 rows with an answer: add answered rows or lower the batch"
    )
    _jsonl(train, [*rows, {"id": "t3", "prompt": "What is 3 plus 1?", "answer": "4"}])
    preflight(load_config("tiny", grpo))


def test_a_solution_whose_final_answer_contradicts_the_rows_answer_is_refused(tmp_path: Path) -> None:
    # It would be a gold row or a few-shot example teaching 4 for a problem whose answer is 21.
    right = {"id": "t0", "prompt": "What is 1 plus 1?", "answer": "2", "solution": " 1 + 1 = 2. The answer is 2."}
    wrong = {
        "id": "t1",
        "prompt": "A ball costs 10 and a kite 11. Both?",
        "answer": " 21 ",
        "solution": " 2 + 2 = 4. The answer is 4.",
    }
    train = _jsonl(tmp_path / "train.jsonl", [right, wrong])
    pattern = load_config("tiny").judge.answer_pattern
    refused = (
        f"{train}, line 2: the solution ends with answer 4, but 'answer' is 21 (id 't1'); a gold row or worked example "
        "made of it would teach the wrong answer: correct one of them"
    )
    with pytest.raises(PromptFileError) as caught:
        check_solutions_agree(str(train), load_prompt_file(train), pattern)
    assert str(caught.value) == refused
    # Read as the verifier reads a response: a solution in another form, or with no answer, is not compared.
    check_solutions_agree(str(train), [right, {**wrong, "solution": " 2 + 2 = 4, so 4"}], pattern)
    check_solutions_agree(str(train), [{**wrong, "answer": None}], pattern)
    check_solutions_agree(str(train), [{**wrong, "solution": " The answer is 021."}], pattern)  # 021 is 21
    validation = _jsonl(tmp_path / "validation.jsonl", [{"prompt": "What is 1 plus 2?", "answer": "3"}])
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    with pytest.raises(PromptFileError) as caught:
        preflight(load_config("tiny", files))
    assert str(caught.value) == refused


def test_training_answers_the_answer_pattern_cannot_read_are_refused(tmp_path: Path) -> None:
    # "30.0" (pandas writes an integer column with a gap so): no sample could be verified against it, and a gold
    # row made of it would teach " The answer is 30.0.", which the strict check never credits.
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    rows = [{"id": f"t{i}", "prompt": f"What is {i} plus 1?", "answer": f"{i + 1}.0"} for i in range(4)]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    validation.write_text(
        "".join(json.dumps({"prompt": f"What is {i} plus 2?", "answer": "3"}) + "\n" for i in range(4))
    )
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    files += ["prompts.train_size=4", "prompts.validation_size=4", "prompts.few_shot=0", "judge.require_work=false"]
    refused = (
        f"{train}: 4 of 4 training answers (line 1, id 't0': '1.0'; line 2, id 't1': '2.0'; line 3, id 't2': "
        "'3.0'; ...) are not what judge.answer_pattern reads as an answer, so no sample could be verified against "
        "them, and a gold row made of one would teach an answer the strict check never credits; write them as it "
        "reads one (the default pattern: an integer), or set judge.answer_pattern"
    )
    with pytest.raises(PreflightError) as caught:
        preflight(load_config("tiny", files))
    assert str(caught.value) == refused
    # A judge that reads no answers, with no gold rows, takes them; gold rows made of them do not.
    preflight(load_config("tiny", [*files, "judge.kind=pointwise"]))
    with pytest.raises(PreflightError, match=r"train.jsonl: 4 of 4 training answers"):
        preflight(load_config("tiny", [*files, "judge.kind=pointwise", "select.gold_examples=2"]))
    train.write_text("".join(json.dumps({**row, "answer": str(i + 1)}) + "\n" for i, row in enumerate(rows)))
    preflight(load_config("tiny", files))


def test_a_model_cache_that_cannot_be_a_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SELFTRAIN_CACHE", str(blocker / "cache"))  # the run failed building the tiny model
    with pytest.raises(PreflightError, match=rf"^SELFTRAIN_CACHE={blocker / 'cache'}: cannot be created, .* is a file"):
        preflight(load_config("tiny", [f"tracking.output_dir={tmp_path / 'runs'}"]))


def test_a_bad_policy_cache_size_is_named_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFTRAIN_POLICY_CACHE", "abc")  # read at the first policy load, mid-round
    with pytest.raises(PreflightError, match=r"^SELFTRAIN_POLICY_CACHE=abc: not a whole number of 0 or more"):
        preflight(load_config("tiny", [f"tracking.output_dir={tmp_path / 'runs'}"]))


def test_check_model_dir_accepts_the_tiny_model(tiny_dir: Path) -> None:
    check_model_dir("model.name", tiny_dir)


def test_default_campaign_passes_preflight(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert capsys.readouterr().err == ""


def test_validate_says_which_checks_wait_for_a_model_not_on_disk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))  # the packaged Gemma is not converted here
    assert main(["validate"]) == 0
    assert capsys.readouterr().err == (
        "selftrain: note: model.source=packaged-gemma is not on disk yet (not converted or downloaded): its "
        "context, modules and the answers' length in its tokens are checked once a campaign has it\n"
    )


def test_chat_needs_a_tokenizer_with_a_chat_template(tmp_path: Path, tiny_dir: Path) -> None:
    # Called directly: a CLI start-up costs ~30 s here, and every PreflightError is one line (tests above).
    with pytest.raises(PreflightError, match="^prompts.chat: the tokenizer of model.source=tiny has no chat template"):
        check_chat_template(load_config("tiny", ["prompts.chat=true"]))  # the tiny model's tokenizer has none

    model = _copy_model(tiny_dir, tmp_path / "model")
    local = load_config("tiny", ["prompts.chat=true", "model.source=local", f"model.name={model}"])
    with pytest.raises(PreflightError, match=f"prompts.chat: the tokenizer of model.source=local model.name={model}"):
        check_chat_template(local)
    (model / "chat_template.jinja").write_text("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    check_chat_template(local)  # transformers 5 saves a template beside the tokenizer
    (model / "chat_template.jinja").unlink()
    settings = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps(settings | {"chat_template": "{{ bos_token }}"}))
    check_chat_template(local)  # or inside tokenizer_config.json
    check_chat_template(load_config("tiny"))  # off: nothing to check


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_training_rows_without_gold_cannot_feed_a_target_set_or_a_round_bank(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    train = _jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "prompt": f"What is {i} plus 1?"} for i in range(20)])
    validation = _jsonl(tmp_path / "validation.jsonl", [{"prompt": "What is 1 plus 2?", "answer": "3"}])
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.validation_path={validation}"]
    filters = "select.filters=[{kind: perplexity}, {kind: dsir}]"
    refused = (
        f"prompts.train_path={train}: none of its 20 training rows has {GOLD_TARGET}, so the target set of "
        "select.filters.1 (dsir) would be empty"
    )
    assert _rejected(capsys, tmp_path, *files, filters) == refused
    # Meta Ranking's round-1 bank labels only samples of answered prompts: none here, and too few samples here.
    with pytest.raises(
        BankError, match=rf"^prompts\.train_path={train}: round 1's judge\.bank=rounds holds at most 0 "
    ):
        preflight(load_config("tiny", [*files, "judge.kind=meta-ranking"]))
    message = r"^prompts\.train_size=1: .* at most 2 labelled rows .* fewer than judge\.references \(5\) asks for$"
    with pytest.raises(BankError, match=message):
        preflight(load_config("tiny", ["judge.kind=meta-ranking", "prompts.train_size=1", "generate.k=2"]))
    # Answers alone make a target set, but not under judge.require_work: a bare answer shows no working.
    _jsonl(train, [{"id": f"t{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(20)])
    preflight(load_config("tiny", [*files, filters]))
    assert _rejected(capsys, tmp_path, *files, filters, "judge.require_work=true") == refused
    _jsonl(train, [{"id": "t0", "prompt": "What is 1 plus 1?", "solution": " 1 + 1 = 2."}])
    # One worked solution is a target set (under a judge that needs no answers: the verifier refuses a file without).
    preflight(load_config("tiny", [*files, filters, "judge.kind=pointwise"]))


def test_a_reference_bank_file_too_small_or_with_one_label_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bank = _jsonl(tmp_path / "bank.jsonl", [{"prompt": f"q{i}", "response": "r", "correct": i < 2} for i in range(3)])
    judge = ["judge.kind=meta-ranking", "judge.bank=file", f"judge.bank_path={bank}"]
    assert (
        _rejected(capsys, tmp_path, *judge)
        == f"{bank}: holds 3 labelled rows, fewer than judge.references (5) asks for"
    )
    _jsonl(bank, [{"prompt": f"q{i}", "response": "r", "correct": False} for i in range(8)])
    with pytest.raises(BankError, match=rf"^{bank}: field 'correct': every row is wrong \(8 of 8\)"):
        preflight(load_config("tiny", judge))
    with pytest.raises(BankError, match=rf"^{tmp_path / 'missing.jsonl'}: reference bank file not found$"):
        preflight(load_config("tiny", [*judge[:2], f"judge.bank_path={tmp_path / 'missing.jsonl'}"]))
    _jsonl(bank, [{"prompt": f"q{i}", "response": "r", "correct": i % 2 == 0} for i in range(8)])
    preflight(load_config("tiny", judge))  # both labels, enough rows


def test_the_campaign_flow_checks_its_inputs_where_it_runs(tmp_path: Path) -> None:
    # A run from the Prefect UI, a schedule or `selftrain submit` never passed the CLI's check: the flow checks
    # before it creates a folder or an MLflow run. A config this process has checked is not checked twice.
    from flows.campaign import campaign_flow
    from flows.preflight import preflight_once

    out = tmp_path / "runs"
    missing = tmp_path / "missing.jsonl"
    config = load_config("tiny", [f"tracking.output_dir={out}", "prompts.source=file", f"prompts.train_path={missing}"])
    with pytest.raises(ValueError, match=f"^{missing}: file not found$"):
        campaign_flow.fn(config)
    assert not out.exists(), "a run with a bad input must not create its output folder"
    rows = [{"prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(12)]
    missing.write_text("".join(json.dumps(row) + "\n" for row in rows))
    preflight(config)  # now it passes, and this process remembers that
    missing.unlink()
    preflight_once(config)  # not read again
    with pytest.raises(ValueError, match="file not found"):
        preflight(config)


@pytest.mark.usefixtures("prefect_server")  # the flow's model task runs through Prefect
def test_what_preflight_cannot_read_before_the_model_is_converted_is_checked_once_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unconverted packaged Gemma has no tokenizer on disk, so preflight cannot count the worked answers' tokens
    # and lets a response length through that cuts them (every cut answer fails the strict check: a campaign
    # scoring nothing, silently). The campaign checks again once it has the model, before its folder or run.
    from flows.campaign import campaign_flow
    from models.gemma import ensure_packaged_gemma
    from tasks.base_model import cache_root

    converted = ensure_packaged_gemma(cache_root() / "models")  # the machine's conversion, made once
    monkeypatch.setenv("SELFTRAIN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    config = load_config("default", [f"tracking.output_dir={out}", "generate.max_new_tokens=30"])
    preflight(config)  # nothing converted in this cache: the length check is skipped
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / converted.name).symlink_to(converted)  # as the campaign's conversion leaves it
    with pytest.raises(PreflightError, match=r"^generate.max_new_tokens=30: \d+ of 64 worked answers of the train "):
        campaign_flow.fn(config)
    assert not out.exists(), "a campaign refused by its model must not create its output folder"
    check_prepared_model(load_config("default", [f"tracking.output_dir={out}"]))  # the default's lengths fit


def test_a_reference_bank_file_sharing_a_scored_problem_is_refused_and_a_rewording_is_caught(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A judge that ranks against, calibrates on or trains on a test problem's labelled answer picks training rows
    # by what it learnt from that problem: the problem is no longer held out.
    from tasks.arithmetic import parse_question
    from tasks.prompts import campaign_prompts

    story = next(
        row["prompt"] for row in campaign_prompts(load_config("tiny"), "test", 1) if "What is" not in row["prompt"]
    )
    op, (a, b), _ = parse_question(story)  # type: ignore[misc]
    reworded = f"What is {b} plus {a}?" if op == "add" else f"What is {a} minus {b}?"  # a + b and b + a: one problem
    rows = [{"prompt": f"q{i}", "response": "r", "correct": i % 2 == 0} for i in range(8)]
    rows.insert(
        3, {"prompt": reworded, "response": f" The answer is {a + b if op == 'add' else a - b}.", "correct": True}
    )
    bank = _jsonl(tmp_path / "bank.jsonl", rows)
    judge = ["judge.kind=meta-ranking", "judge.bank=file", f"judge.bank_path={bank}"]
    refused = _rejected(capsys, tmp_path, *judge)
    assert refused.startswith(f"judge.bank_path={bank}: 1 row(s) (line 4: {reworded!r}) share a problem with the test ")
    assert refused.endswith("picks training rows by it; at most prompts.max_overlap=0 allowed"), refused
    preflight(load_config("tiny", [*judge, "prompts.max_overlap=1"]))  # allowed, and said
    assert "selftrain: note: judge.bank_path=" in capsys.readouterr().err
    del rows[3]
    _jsonl(bank, rows)
    preflight(load_config("tiny", judge))
    assert capsys.readouterr().err == ""


def test_an_extra_set_sharing_training_prompts_of_a_file_campaign_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tasks.leakage

    def read_again(*args: object) -> None:
        raise AssertionError("the leak check read the training file again; preflight had read it")

    monkeypatch.setattr(tasks.leakage, "file_split", read_again)
    train = _jsonl(
        tmp_path / "train.jsonl",
        [{"id": f"t{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(20)],
    )
    extra = _jsonl(
        tmp_path / "bench.jsonl",
        [
            {"id": "b1", "prompt": "What is 40 plus 2?", "answer": "42"},
            {"id": "b2", "prompt": "what is  7 PLUS 1?", "answer": "8"},
        ],
    )
    files = [
        "prompts.source=file",
        f"prompts.train_path={train}",
        f"evaluate.extra_sets=[{{name: bench, path: {extra}}}]",
    ]
    assert _rejected(capsys, tmp_path, *files) == (
        f"{extra}: 1 row(s) (id 'b2': 'what is  7 PLUS 1?') of evaluate.extra_sets 'bench' are training prompts; "
        "at most prompts.max_overlap=0 allowed"
    )
    preflight(load_config("tiny", [*files, "prompts.max_overlap=1"]))
    assert "are training prompts; allowed by prompts.max_overlap=1" in capsys.readouterr().err


def test_an_extra_set_asking_a_built_in_training_problem_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The built-in draw is per round and level, so a row is refused for the problem it asks, in any phrasing:
    # a training-split problem within the campaign's operands. Problems past the range are the OOD kind, held out.
    from tasks.arithmetic import parse_question
    from tasks.prompts import campaign_prompts

    config = load_config("tiny")
    op, (a, b), _ = parse_question(campaign_prompts(config, "train", 1)[0]["prompt"])  # type: ignore[misc]
    asked = f"What is {a} {'plus' if op == 'add' else 'minus'} {b}?"
    rows = [{"id": "ood", "prompt": campaign_prompts(config, "ood", 1)[0]["prompt"], "answer": "1"}]
    rows.append({"id": "seen", "prompt": asked, "answer": "1"})
    extra = ["evaluate.extra_sets=[{name: bench, path: " + str(_jsonl(tmp_path / "bench.jsonl", rows)) + "}]"]
    assert _rejected(capsys, tmp_path, *extra) == (
        f"{tmp_path / 'bench.jsonl'}: 1 row(s) (id 'seen': {asked!r}) of evaluate.extra_sets 'bench' are problems "
        "the training draw may ask; at most prompts.max_overlap=0 allowed"
    )
    _jsonl(tmp_path / "bench.jsonl", rows[:1])
    preflight(load_config("tiny", extra))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("reach", [("prompts.level=2",), ("prompts.level=1", "prompts.curriculum=true")])
def test_an_ood_slice_that_training_reaches_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, reach: tuple[str, ...]
) -> None:
    # The OOD slice is drawn above prompts.max_operand (9 in tiny), and level 2 trains on operands up to 20.
    from tasks.arithmetic import parse_question
    from tasks.leakage import may_train_on
    from tasks.prompts import campaign_prompts

    message = _rejected(capsys, tmp_path, *reach)
    assert message.startswith("prompts.ood_size=")
    assert "of the OOD slice (operands 10..18) are problems the training draw may ask" in message
    assert message.endswith(
        "trains on operands up to 20, above prompts.max_operand=9): raise prompts.max_operand to 20, or set "
        "prompts.ood_size: 0; at most prompts.max_overlap=0 allowed"
    )
    config = load_config("tiny", reach)
    ood = campaign_prompts(config, "ood", 1)
    trained = may_train_on(config)
    assert any(trained(row) for row in ood)  # the refusal is real: a level-2 training draw may ask them
    assert all(10 <= x <= 18 for row in ood for x in parse_question(row["prompt"])[1])  # type: ignore[index]
    for fine in ([*reach, "prompts.max_operand=20"], [*reach, "prompts.ood_size=0"]):
        preflight(load_config("tiny", fine))
        assert capsys.readouterr().err == ""


def test_preflight_reads_the_bank_and_the_extra_sets_once_and_draws_each_split_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The size, leak, context and answer-length checks share what preflight loaded and drew, rather than each
    # loading and drawing it again (before: the bank read twice, each held-out split drawn three times here).
    import tasks.judging.reference_bank as reference_bank
    import tasks.prompts as prompts

    reads: list[str] = []
    draws: list[str] = []
    read_text, load_prompt_file, campaign_prompts = (
        reference_bank.read_text,
        prompts.load_prompt_file,
        prompts.campaign_prompts,
    )

    def counted_read(path: Path) -> str:
        reads.append(Path(path).name)
        return read_text(path)

    def counted_load(path: Path, **kwargs: bool) -> list:
        reads.append(Path(path).name)
        return load_prompt_file(path, **kwargs)

    def counted_draw(config: CampaignConfig, split: str, round_index: int) -> list:
        draws.append(split)
        return campaign_prompts(config, split, round_index)

    monkeypatch.setattr(reference_bank, "read_text", counted_read)
    monkeypatch.setattr(prompts, "load_prompt_file", counted_load)
    monkeypatch.setattr(prompts, "campaign_prompts", counted_draw)
    bank = _jsonl(
        tmp_path / "bank.jsonl", [{"prompt": f"q{i}", "response": "r", "correct": i % 2 == 0} for i in range(8)]
    )
    bench = _jsonl(tmp_path / "bench.jsonl", [{"id": "b", "prompt": "How many legs has a cat?", "answer": "4"}])
    preflight(
        load_config(
            "tiny",
            [
                "judge.kind=meta-ranking",
                "judge.bank=file",
                f"judge.bank_path={bank}",
                f"evaluate.extra_sets=[{{name: bench, path: {bench}}}]",
            ],
        )
    )
    assert sorted(reads) == ["bank.jsonl", "bench.jsonl"]
    assert sorted(draws) == ["ood", "test", "train", "validation"]


def test_preflight_reads_each_prompt_file_of_a_file_campaign_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The file checks, the training split, the validation carved from the training file and round 1's draw each
    # ask for the training file's rows, and two checks for the test file's (before: read five and two times).
    import tasks.prompt_files as prompt_files

    reads: list[str] = []
    read_rows = prompt_files._read_rows

    def counted(path: Path) -> tuple[list, str]:
        reads.append(path.name)
        return read_rows(path)

    monkeypatch.setattr(prompt_files, "_read_rows", counted)
    train = _jsonl(
        tmp_path / "train.jsonl", [{"prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(40)]
    )
    test = _jsonl(tmp_path / "test.jsonl", [{"prompt": "What is 100 plus 1?", "answer": "101"}])
    files = ["prompts.source=file", f"prompts.train_path={train}", f"prompts.test_path={test}"]
    preflight(load_config("tiny", [*files, f"tracking.output_dir={tmp_path / 'runs'}"]))
    assert sorted(reads) == ["test.jsonl", "train.jsonl"]
    prompt_files.load_prompt_file(train)  # after preflight, a call reads the file again
    assert sorted(reads) == ["test.jsonl", "train.jsonl", "train.jsonl"]


def test_a_ray_cluster_that_does_not_answer_is_refused_before_the_run_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Found before: round 1's sharded step, after the campaign's folder, MLflow run and start evaluations.
    from flows.preflight import check_ray_cluster

    port = free_port()  # a port nothing listens on
    ray = [f"scale.ray_address=127.0.0.1:{port}", "scale.connect_timeout=1"]
    message = _rejected(capsys, tmp_path, *ray, "generate.shards=2")
    assert message.startswith(f"scale.ray_address=127.0.0.1:{port}: no Ray cluster answered within 1 s ("), message
    check_ray_cluster(load_config("tiny", ray))  # no step shards: the address is not asked
    with pytest.raises(ConnectionError, match=r"no Ray cluster answered"):
        check_ray_cluster(load_config("tiny", [*ray, "evaluate.shards=2"]))


def test_a_bad_output_folder_fails_before_the_task_modules_load(tmp_path: Path) -> None:
    # The cheap checks come first and answer in a second: the prompt and leak checks' modules (which bring Prefect,
    # some seconds) load only once those pass.
    import subprocess
    import sys

    (tmp_path / "afile").touch()
    script = (
        "import sys\n"
        "from configs.loader import load_config\n"
        "from flows.preflight import PreflightError, preflight\n"
        "try:\n"
        f"    preflight(load_config('tiny', ['tracking.output_dir={tmp_path / 'afile' / 'runs'}']))\n"
        "except PreflightError as error:\n"
        "    print(error)\n"
        "print(sorted(m for m in ('tasks.prompts', 'tasks.leakage', 'prefect') if m in sys.modules))\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown.splitlines() == [
        f"tracking.output_dir={tmp_path / 'afile' / 'runs'}: cannot be created, {tmp_path / 'afile'} is a file",
        "[]",
    ]


def test_a_store_file_that_is_not_an_sqlite_database_is_named_and_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `echo garbage > runs/mlflow.db`: MLflow's "file is not a database" came mid-run, after tracebacks, without the
    # file's name. Refused by run and validate alike, the file untouched; an empty file is an empty store (SQLite).
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mlflow.db").write_bytes(b"garbage\n")
    expected = (
        "selftrain: error: tracking: runs/mlflow.db (the MLflow store in tracking.output_dir=runs) is not an SQLite "
        "database (it starts with b'garbage\\n', not SQLite's header); move it away or name another store\n"
    )
    for command in ("run", "validate"):
        assert main([command, "tiny"]) == 2
        assert capsys.readouterr().err == expected
    other = tmp_path / "other.db"
    other.write_bytes(b"SQLite format 2\x00" + bytes(100))
    uri = f"sqlite:///{other}"
    assert main(["validate", "tiny", f"tracking.tracking_uri={uri}"]) == 2
    assert capsys.readouterr().err.startswith(
        f"selftrain: error: tracking.tracking_uri={uri}: {other} is not an SQLite database (it starts with "
    )
    assert (runs / "mlflow.db").read_bytes() == b"garbage\n" and [p.name for p in runs.iterdir()] == ["mlflow.db"]
    (runs / "mlflow.db").write_bytes(b"")  # SQLite reads an empty file as an empty database
    assert main(["validate", "tiny"]) == 0
    capsys.readouterr()
