"""The shared trainer pieces: LoRA settings, CPU trainer settings as TRL reads them, train-then-replace and weight
averaging."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from trl import DPOConfig, SFTConfig

from configs.schema import TrainConfig
from models.training import WeightAverage, cpu_trainer_settings, lora_config, train_then_replace


def test_lora_config_carries_the_train_settings() -> None:
    cfg = TrainConfig(lora_r=4, lora_alpha=12, lora_dropout=0.25, target_modules=["q_proj", "k_proj"])
    lora = lora_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 12, 0.25)
    assert set(lora.target_modules) == {"q_proj", "k_proj"} and lora.task_type == "CAUSAL_LM"


@pytest.mark.parametrize("config_class", [SFTConfig, DPOConfig])
def test_cpu_settings_turn_off_trls_slow_defaults(config_class: type, tmp_path: Path) -> None:
    args = config_class(output_dir=str(tmp_path), **cpu_trainer_settings(17))
    assert args.use_cpu and not args.bf16 and not args.fp16 and not args.gradient_checkpointing
    assert (args.seed, args.data_seed, args.dataloader_num_workers) == (17, 17, 0)
    assert args.save_strategy == "no" and args.report_to == [] and args.disable_tqdm


def test_train_then_replace_swaps_in_the_result(tmp_path: Path) -> None:
    out = tmp_path / "round-01" / "adapter"  # parents are created
    for text in ("first", "second"):
        with train_then_replace(out) as scratch:
            scratch.work.mkdir()
            (scratch.work / "checkpoint.bin").write_text("trainer scratch")
            scratch.result.mkdir()
            (scratch.result / "weights").write_text(text)
            assert not out.exists() or (out / "weights").read_text() == "first", "out_dir is untouched until the end"
        assert sorted(p.name for p in out.iterdir()) == ["weights"] and (out / "weights").read_text() == text
    assert sorted(p.name for p in out.parent.iterdir()) == ["adapter"], "no scratch folder is left behind"


def test_a_killed_trainings_scratch_folder_is_swept_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "round-02" / "adapter"
    killed = tmp_path / "round-02" / ".adapter.k1ll3d"  # SIGKILL: no finally ran
    (killed / "work").mkdir(parents=True)
    other = tmp_path / "round-02" / ".other.keep"  # another output's scratch is not this one's to sweep
    other.mkdir()
    with train_then_replace(out) as scratch:
        scratch.result.mkdir()
        (scratch.result / "weights").write_text("new")
    assert sorted(p.name for p in out.parent.iterdir()) == [".other.keep", "adapter"]


def test_a_failed_training_leaves_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "weights").write_text("old")
    with pytest.raises(RuntimeError, match="diverged"), train_then_replace(out) as scratch:
        scratch.result.mkdir()
        (scratch.result / "weights").write_text("half")
        raise RuntimeError("diverged")
    with pytest.raises(FileNotFoundError, match="wrote no result"), train_then_replace(out):
        pass
    assert (out / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"], "no scratch folder is left behind"


def test_weight_average_saves_the_mean_of_the_steps_from_its_start() -> None:
    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)  # frozen weights are left as they are
    average = WeightAverage(0.5)
    state = SimpleNamespace(max_steps=4, global_step=0)
    average.on_train_begin(None, state, None)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
            model.bias.fill_(-value)
        state.global_step = step
        average.on_step_end(None, state, None, model=model)
    average.on_train_end(None, state, None, model=model)
    assert average.averaged_steps == 2  # steps 3 and 4: after the first half
    assert torch.equal(model.weight, torch.full((1, 2), 6.0)) and torch.equal(model.bias, torch.tensor([-8.0]))
