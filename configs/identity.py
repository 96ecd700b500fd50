"""What in a campaign's config can change its results: the campaign's identity, and the key of its cached steps.

A campaign resumed with the same identity reopens the same folder and runs (`flows.campaign_state.campaign_key`),
and its finished steps are cache hits (`tasks.layout.RESUMABLE`), whatever the fields outside it say: where
results go and how fast the campaign runs (shards give the same samples: seeded per prompt).
"""

from __future__ import annotations

from typing import Any

from configs.schema import CampaignConfig

OUTSIDE_IDENTITY = (
    "tracking",
    "model.torch_threads",
    "generate.shards",
    "evaluate.shards",
    "scale",
    "storage",
)


def outside_identity(dotted: str) -> bool:
    """Whether a config field (`section.field`) is left out of the campaign's identity."""
    return any(dotted == field or dotted.startswith(field + ".") for field in OUTSIDE_IDENTITY)


def identity_data(config: CampaignConfig) -> dict[str, Any]:
    """The config as JSON-able data without the fields outside the identity."""
    data = config.model_dump(mode="json")
    for field in OUTSIDE_IDENTITY:
        *path, last = field.split(".")
        section = data
        for name in path:
            section = section[name]
        section.pop(last)
    return data
