"""The filtering experiment's arms (configs/experiments/filter/) validate, are comparable, and only the oracle's
selection reads the verifier's score."""

from __future__ import annotations

from pathlib import Path

from configs.loader import load_config
from flows.ablation import check_comparable

ARMS = sorted((Path(__file__).resolve().parents[2] / "configs" / "experiments" / "filter").glob("*.yaml"))


def test_arms_validate_are_comparable_and_only_the_oracle_reads_the_verifier() -> None:
    configs = {path.stem: load_config(str(path)) for path in ARMS}
    assert set(configs) == {
        f"filter-{arm}"
        for arm in ("keep-all", "oracle", "meta-ranking", "pointwise", "reward-model")
        + ("perplexity", "confidence", "color", "dsir")
    }
    assert all(config.name == name for name, config in configs.items())
    check_comparable(list(configs.values()))
    for name, config in configs.items():
        # A cap below k (or dedupe keeping the top-scored copy) would rank rows by the judge's score.
        assert config.select.max_per_prompt >= config.generate.k and not config.select.dedupe, name
        reads_verifier = config.judge.kind == "verifier" and config.select.threshold > 0
        assert reads_verifier == (name == "filter-oracle"), name
    kinds = {f.kind for config in configs.values() for f in config.select.filters}
    assert kinds == {"perplexity", "confidence", "color", "dsir"}
