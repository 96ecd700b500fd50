"""Config sections for scaling out: where a campaign stores its files (`storage`) and the Ray cluster (`scale`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from configs.fields import Strict

LOCAL_SCHEMES = ("file",)  # a URL naming a folder here; any other scheme is mirrored (tasks/storage_mirror.py)


def check_storage_url(value: str) -> str:
    """Raise unless `value` is a plain path or a URL whose scheme has an installed fsspec filesystem.

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
    return value


class StorageConfig(Strict):
    """One base location for a campaign's folder and its Prefect results."""

    base: str = Field(
        "",
        description=(
            "Folder or fsspec URL (file://, memory://, s3://... when its filesystem package is installed) under "
            "which campaign folders and Prefect's persisted task results live, so another worker sees the cached "
            "steps; empty: tracking.output_dir, as before. With a URL other than file:// the campaign runs in a "
            "local folder under tracking.output_dir, mirrored to <base>/<campaign_id> after each round and when "
            "the campaign ends, and fetched from there by a resume on a host that lacks it."
        ),
    )

    @field_validator("base")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_storage_url(value)  # the loader names the field

    def root(self, output_dir: str) -> Path:
        """The absolute folder campaign folders go under: `base` (a file:// URL as its path), else `output_dir`
        (also for an object-store URL: the local working copies it mirrors)."""
        base = output_dir if self.mirrored else self.base.removeprefix("file://") or output_dir
        return Path(base).expanduser().resolve()

    @property
    def mirrored(self) -> bool:
        """Whether `base` is a URL that campaign folders are mirrored to rather than a folder here."""
        return "://" in self.base and self.base.split("://", 1)[0] not in LOCAL_SCHEMES

    def mirror(self, campaign_id: str) -> str:
        """The URL a campaign's folder is mirrored to (`<base>/<campaign_id>`), or "" when `base` is a folder."""
        if not self.mirrored:
            return ""
        return f"{self.base}{'' if self.base.endswith('/') else '/'}{campaign_id}"  # `s3://b/` and `memory://` too


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
