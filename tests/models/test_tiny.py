"""The tiny model: its directory, its cache, recovery from interrupted builds, and its tokenizer."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.integrity import REQUIRED_FILES
from models.tiny import ensure_tiny_model


def test_directory_loads_offline_with_matching_vocabulary(tiny_dir: Path) -> None:
    for name in REQUIRED_FILES:
        assert (tiny_dir / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tokenizer)
    assert 400 <= len(tokenizer) <= 1000
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    # The EOS generation stops on is the EOS TRL appends (as text, so it must encode to that one id).
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == model.config.eos_token_id
    assert tokenizer(tokenizer.eos_token, add_special_tokens=False)["input_ids"] == [tokenizer.eos_token_id]


def test_lineage_records_inputs(tiny_dir: Path, tiny_build_args: dict) -> None:
    lineage = json.loads((tiny_dir / "lineage.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert lineage["steps"] == tiny_build_args["steps"] and lineage["seed"] == tiny_build_args["seed"]
    assert lineage["parameters"] == sum(p.numel() for p in model.parameters())
    assert len(lineage["corpus_sha256"]) == len(lineage["warmup_sha256"]) == 64
    assert lineage["warmup_final_loss"] < 2.0  # it learned something (a uniform guess costs ~6)


def test_second_call_reuses_the_build(tiny_dir: Path, tiny_build_args: dict) -> None:
    lines: list[str] = []
    started = time.perf_counter()
    again = ensure_tiny_model(tiny_dir.parent, **tiny_build_args, progress=lines.append)
    assert again == tiny_dir
    assert lines == []  # no warm-up ran
    assert time.perf_counter() - started < 1.0


def test_different_inputs_get_a_different_directory(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    a, b = quick_build(tmp_path, seed=0), quick_build(tmp_path, seed=1)
    assert a != b and a.parent == b.parent == tmp_path


def test_progress_lines_report_steps(
    tmp_path: Path, quick_build: Callable[..., Path], capfd: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    quick_build(tmp_path, steps=2, progress=lines.append)
    assert lines and "2/2" in lines[-1] and "loss" in lines[-1]
    # Its own lines only: a CLI that builds it on first use and then refuses a config prints one line
    # (transformers' "Writing model shards" bar once preceded it; tests/flows/test_preflight.py).
    assert capfd.readouterr().err == ""


def test_leftover_temp_dir_is_never_used(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    name = quick_build(tmp_path / "elsewhere").name
    # A crash mid-build leaves a half-written temp dir for the same key and no final dir.
    leftover = tmp_path / "cache" / f".{name}.tmp-crashed"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("{}")
    built = quick_build(tmp_path / "cache")
    assert built == tmp_path / "cache" / name
    assert (built / "model.safetensors").is_file()
    AutoModelForCausalLM.from_pretrained(built)


@pytest.mark.parametrize("missing", ["model.safetensors", "lineage.json", "tokenizer.json"])
def test_incomplete_final_dir_is_rebuilt(tmp_path: Path, quick_build: Callable[..., Path], missing: str) -> None:
    built = quick_build(tmp_path)
    (built / missing).unlink()
    assert quick_build(tmp_path) == built
    assert (built / missing).is_file()
    AutoModelForCausalLM.from_pretrained(built)
    AutoTokenizer.from_pretrained(built)


def test_no_temp_dirs_remain_after_builds(tmp_path: Path, quick_build: Callable[..., Path]) -> None:
    built = quick_build(tmp_path)
    shutil.rmtree(built)
    quick_build(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [built.name]


@pytest.mark.parametrize(
    "text",
    [
        "Question: Tom has 3 apples.\nAnswer: 3 + 4 = 7. The answer is 7.",
        "  leading and trailing spaces  ",
        "unseen words: zyxwvut, Ünïcödé, 日本語, emoji 🙂, tabs\tand\r\nnewlines",
        "12345678901234567890",
        "",
    ],
)
def test_tokenizer_round_trips_any_text(tiny_dir: Path, text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert not set(ids) & set(tokenizer.all_special_ids)  # no BOS or EOS added around the text


def test_tokenizer_splits_digits(tiny_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert tokenizer.tokenize("12345") == ["1", "2", "3", "4", "5"]
    pieces = [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.tokenize(" 17 + 25 = 42.")]
    assert [p for p in pieces if p.strip().isdigit()] == ["1", "7", "2", "5", "4", "2"]


def test_prompt_is_a_token_prefix_of_prompt_plus_completion(
    tiny_dir: Path, warmup_pairs: Callable[[int], list[tuple[str, str]]]
) -> None:
    # TRL takes the completion to start where the two tokenizations diverge; a clean boundary means
    # SFT trains on exactly the context the model sees when it generates.
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    for prompt, completion in warmup_pairs(32):
        joint = tokenizer(prompt + completion)["input_ids"]
        assert joint == tokenizer(prompt)["input_ids"] + tokenizer(completion)["input_ids"]
