"""The campaign's round-0 policy: the base model, or with `start_from: champion` the registry's champion, checked
against what this campaign scores (what it was trained on: `tasks.champion_lineage`) and pinned for a resume."""

from __future__ import annotations

import json

from configs.schema import CampaignConfig
from flows.campaign_state import Campaign
from flows.interrupt import StopError
from flows.preflight import campaign_draws, scored_draws
from tasks.champion_lineage import trained_prompts
from tasks.layout import CampaignLayout
from tasks.leakage import champion_overlaps
from tasks.model_registry import champion, download_policy, registered_name
from tasks.progress import emit
from tasks.prompts import load_extra_sets
from tasks.records import ModelRef, Record, atomic_write_text
from tasks.tracking import set_tags


def start_policy(config: CampaignConfig, base: ModelRef, campaign: Campaign) -> tuple[ModelRef, str | None]:
    """The round-0 policy and the MLflow URI of its adapter: the base, or with `start_from: champion` the
    registry's champion (pinned in `start-policy/start.json`, so a resumed campaign starts from the same one).
    """
    if config.start_from == "base":
        return base, None
    layout = CampaignLayout(campaign.workdir)
    pinned = layout.start_policy / "start.json"
    if pinned.exists():
        saved = json.loads(pinned.read_text(encoding="utf-8"))
        return ModelRef.model_validate(saved["policy"]), saved["source"]
    name = registered_name(config.name)
    version = champion(config.tracking, name)
    if version is None:
        emit(f"start_from=champion: {name} has no champion yet; starting from the base model")
        return base, None
    if version.tags.get("base_sha256") != base.sha256:
        raise StartPolicyError(
            f"start_from=champion: {name} version {version.version} was trained on another base model than "
            f"this campaign's {config.model.source} model ({base.base}): start from the base (start_from=base), or "
            "give the campaign another name (its own registered model)"
        )
    trained = trained_prompts(config.tracking, version, layout.downloads / "champion")
    for read in trained.read:
        emit(f"start_from=champion: reading the training rows of {read}")
    for gap in trained.missing:
        emit(f"start_from=champion: note: {gap}, so what it was trained on there is not checked")
    check_champion_leak(config, f"{name} version {version.version}", trained.rows)
    policy, source = download_policy(config.tracking, version, pinned.parent)
    record = {"policy": policy.model_dump(), "source": source, "version": version.version}
    atomic_write_text(pinned, json.dumps(record, indent=2))
    set_tags(config.tracking, campaign.parent_run_id, {"selftrain.start_policy": f"{name}/{version.version}"})
    emit(f"start_from=champion: starting from {name} version {version.version}")
    return policy, source


class StartPolicyError(StopError):
    """`start_from: champion` names a policy this campaign cannot start from: trained on another base model, or on
    problems this campaign scores."""


def check_champion_leak(config: CampaignConfig, version: str, trained: list[Record]) -> None:
    """Refuse a starting champion (`version`, 'selftrain-tiny version 2') trained on more than `prompts.max_overlap`
    problems of a set this campaign scores (validation, test, OOD, extra sets; `trained`, its rounds' rows as
    `tasks.champion_lineage.trained_prompts` read them), and note a smaller overlap: a campaign that starts from a
    policy tuned on an item cannot score it as held out, nor decide promotion by it."""
    allowed = config.prompts.max_overlap
    scored = scored_draws(campaign_draws(config), load_extra_sets(config))
    for count, reason in champion_overlaps(config, trained, scored):
        if count > allowed:
            raise StartPolicyError(
                f"start_from=champion: {version}: {reason}, so they are not held out from it; at most "
                f"prompts.max_overlap={allowed} allowed: start from the base (start_from=base), or give the "
                "campaign another name (its own registered model)"
            )
        emit(f"start_from=champion: note: {version}: {reason}; allowed by prompts.max_overlap={allowed}")
