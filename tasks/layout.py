"""Where a campaign keeps its files: one owner for the folder layout, the round seed rule and resumable task options.

Flows, tasks, `selftrain reproduce` and the tests ask this module for a path instead of spelling `round-NN/...`
themselves. A campaign folder (named and locked by `flows/campaign_state.py`) holds:

    config.json                      the resolved config
    validation.jsonl test.jsonl ood.jsonl extra-<name>.jsonl   the campaign's fixed evaluation prompts
    round-00/                        the starting policy: its validation, test, OOD (and extra sets') answers
    round-NN/                        one round: prompts, generated, judged, selected .jsonl, adapter/,
                                     evaluated.jsonl (validation), test- and ood-evaluated.jsonl if promoted,
                                     round_input.json, round_result.json
    start-policy/                    a registered champion downloaded to start from
    accuracy.png                     the report's plot
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from prefect.cache_policies import TASK_SOURCE, CachePolicy, Inputs

from configs.identity import identity_data
from configs.schema import CampaignConfig


class TaskCaching(TypedDict):
    """The caching keywords of `prefect.task`, typed so that `@task(**RESUMABLE)` is checked like written-out ones."""

    cache_policy: CachePolicy
    persist_result: bool


@dataclass
class ResultInputs(CachePolicy):
    """Prefect's INPUTS, with a campaign config keyed on its identity (`configs.identity`): a resume that changes
    only fields outside it (threads, shards, where results are mirrored) finds the finished steps cached, as the
    campaign it reopens does. The round's context still holds the tracking store its metrics go to.

    Not a subclass of Prefect's `Inputs`: a compound policy replaces every `Inputs` in it with a plain one."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        keyed = {k: identity_data(v) if isinstance(v, CampaignConfig) else v for k, v in (inputs or {}).items()}
        return Inputs().compute_key(task_ctx, keyed, flow_parameters, **kwargs)


# Every loop step is a Prefect task keyed on its inputs and its own source, with its result persisted under the
# campaign folder: a re-run campaign finds the steps a crash interrupted after as cache hits (flows/campaign_state.py).
RESUMABLE: TaskCaching = {"cache_policy": ResultInputs() + TASK_SOURCE, "persist_result": True}

PROMPTS = "prompts.jsonl"
GENERATED = "generated.jsonl"
JUDGED = "judged.jsonl"
SELECTED = "selected.jsonl"
ACCUMULATED = "accumulated.jsonl"  # train.init=base: every round's selected rows so far
ADAPTER = "adapter"
ROUND_INPUT = "round_input.json"
ROUND_RESULT = "round_result.json"
DATA_FILES = (PROMPTS, GENERATED, JUDGED, SELECTED, "evaluated.jsonl")  # what `selftrain reproduce` compares


def round_seed(campaign_seed: int, round_index: int) -> int:
    """The seed of round `round_index` (0: the starting policy), from the campaign's: the one rule every step uses."""
    return campaign_seed * 1000 + round_index


def evaluated_name(split: str) -> str:
    """File name of a policy's scored answers on `split` ("validation", "test", "ood" or `extra/<name>`)."""
    return "evaluated.jsonl" if split == "validation" else f"{split.replace('/', '-')}-evaluated.jsonl"


@dataclass(frozen=True)
class CampaignLayout:
    """The paths inside one campaign folder (module docstring)."""

    root: Path

    def round_dir(self, index: int) -> Path:
        """Round `index`'s folder (`round-00` is the starting policy's)."""
        return self.root / f"round-{index:02d}"

    def in_round(self, index: int, name: str) -> Path:
        """File or folder `name` (a module constant) of round `index`."""
        return self.round_dir(index) / name

    def evaluated(self, index: int, split: str = "validation") -> Path:
        """Round `index`'s policy's scored answers on `split`."""
        return self.round_dir(index) / evaluated_name(split)

    def split_prompts(self, split: str) -> Path:
        """The campaign's fixed prompts of `split` (validation, test, ood, `extra/<name>`)."""
        return self.root / f"{split.replace('/', '-')}.jsonl"

    @property
    def config(self) -> Path:
        """The resolved config, logged on the campaign run."""
        return self.root / "config.json"

    @property
    def plot(self) -> Path:
        """The accuracy plot."""
        return self.root / "accuracy.png"

    @property
    def start_policy(self) -> Path:
        """Where a registered champion to start from is downloaded (and pinned for a resume)."""
        return self.root / "start-policy"

    @property
    def downloads(self) -> Path:
        """Scratch space for artifacts read back from MLflow."""
        return self.root / ".downloads"
