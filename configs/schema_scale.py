"""Config sections for scaling out: where a campaign stores its files (`storage`) and the Ray cluster (`scale`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from configs.fields import Strict

RUNS_ON = ("file",)  # schemes a campaign folder can live on today; others are validated, then refused


def check_storage_url(value: str) -> str:
    """Raise unless `value` is a plain path or a URL whose scheme has an installed fsspec filesystem that a
    campaign folder can live on (`RUNS_ON`).

    Args:
        value: A folder path or an fsspec URL (`file:///srv/runs`, `memory://team`, `s3://bucket/runs`).

    Returns:
        `value` unchanged.
    """
    if "://" not in value:
        return value
    scheme = value.split("://", 1)[0]
    from fsspec.registry import get_filesystem_class  # fsspec comes with datasets and Prefect

    try:
        get_filesystem_class(scheme)
    except (ValueError, ImportError) as error:
        reason = str(error).splitlines()[0] if str(error) else "unknown protocol"
        raise ValueError(f"{value}: no installed fsspec filesystem for '{scheme}://' ({reason})") from None
    if scheme not in RUNS_ON:
        # Campaign folders are local paths throughout (trainers, MLflow artifacts, the lock): a shared
        # filesystem mounted as a folder works today; object stores are designed (infra/SCALING.md), not run.
        raise ValueError(
            f"{value}: '{scheme}://' is installed but campaign folders run on a folder or file:// URL only "
            "(mount shared storage as a folder)"
        )
    return value


class StorageConfig(Strict):
    """One base location for a campaign's folder and its Prefect results."""

    base: str = Field(
        "",
        description=(
            "Folder or fsspec URL (file://, memory://, s3://... when its filesystem package is installed) under "
            "which campaign folders and Prefect's persisted task results live, so another worker sees the cached "
            "steps; empty: tracking.output_dir, as before."
        ),
    )

    @field_validator("base")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_storage_url(value)  # the loader names the field

    def root(self, output_dir: str) -> Path:
        """The absolute folder campaign folders go under: `base` (a file:// URL as its path), else `output_dir`."""
        base = self.base.removeprefix("file://") or output_dir
        return Path(base).expanduser().resolve()


class ScaleConfig(Strict):
    """The Ray cluster that runs sharded generation and evaluation (generate.shards / evaluate.shards > 1)."""

    ray_address: str = Field(
        "",
        description=(
            "Address of a running Ray cluster (host:port of its head, or ray://host:10001); empty: start a local "
            "cluster on loopback with one CPU per shard for the step and stop it after."
        ),
    )
    connect_timeout: float = Field(
        10.0, gt=0.0, le=600.0, description="Seconds to wait for ray_address to answer before failing."
    )
