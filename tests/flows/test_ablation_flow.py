"""The ablation flow's checks that need no campaign: a reference arm that is not an arm fails before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import load_config
from flows.ablation_flow import ablation_flow
from tests.cli import REPO


def test_unknown_reference_arm_fails_before_any_arm_runs(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/experiments/sft-verified.yaml", [f"tracking.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="reference arm 'nope' is not one of the arms \\(sft-verified\\)"):
        ablation_flow.fn([config], "ci", reference="nope")
    assert not any(tmp_path.iterdir())  # no MLflow run, no folder
