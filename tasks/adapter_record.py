"""Record an adapter a trainer has just saved: its lineage, the `train/*` metrics, the artifact, and its reference.

Every trainer step (SFT, DPO, SuperHF) ends the same way, so the new policy's lineage and tracking never differ
by trainer.
"""

from __future__ import annotations

from pathlib import Path

from configs.schema import CampaignConfig, TrainConfig
from tasks.records import DatasetRef, ModelRef, sha256_dir, write_lineage
from tasks.tracking import RoundContext


def record_adapter(
    config: CampaignConfig,
    policy: ModelRef,
    out_dir: str,
    ctx: RoundContext,
    metrics: dict[str, float],
    *,
    seed: int,
    train: TrainConfig | None = None,
    **data: DatasetRef,
) -> ModelRef:
    """After any trainer saved an adapter in `out_dir`: write its lineage (parent policy, `data` refs, the train
    config the round trained with, seed), log `train/*` metrics and the adapter, and return the new policy's
    reference. `train`: the settings as the trainer resolved them on this machine (default: the round's)."""
    train = train or config.train_for_round(ctx.round)
    write_lineage(Path(out_dir), parent=policy, **data, train=train, seed=seed)
    ctx.log_metrics({"train/skipped": 0.0, **{f"train/{k}": v for k, v in metrics.items()}})
    ctx.log_artifact(out_dir, "adapter")
    return ModelRef(
        source=policy.source,
        base=policy.base,
        adapter=str(Path(out_dir).resolve()),
        sha256=sha256_dir(out_dir),
    )
