"""The MLflow model registry: every promoted policy as a model version, the alias `champion` on the best.

A version's artifacts are the LoRA adapter plus `base.json`, a reference to the base model (source,
path or hub id, content hash), logged as plain files under the round run's `policy/` folder: MLflow's
transformers flavour reloads a PEFT model on a local base with random base weights (shared NOTES).
The registered model is named `selftrain-<campaign name>`; the tracking store's registry is used, so
the embedded SQLite store works as well as a server.

The alias moves to a new version unless the current champion was scored on the same held-out set
(same content hash) and the new one falls below it by more than the promotion margin: a campaign on
a different held-out set cannot be compared, so its newest promoted policy wins.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from configs.schema import TrackingConfig
from tasks.evaluate import should_promote
from tasks.records import ModelRef, sha256_dir
from tasks.tracking import client_for

CHAMPION = "champion"
POLICY_DIR = "policy"  # artifact folder of a round run holding adapter + base.json


def registered_name(campaign_name: str) -> str:
    """The registered model a campaign's policies go to."""
    return f"selftrain-{campaign_name}"


def champion(cfg: TrackingConfig, name: str) -> ModelVersion | None:
    """The version behind the `champion` alias, or None when the model or the alias does not exist."""
    try:
        return client_for(cfg).get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_policy(
    cfg: TrackingConfig,
    name: str,
    run_id: str,
    policy: ModelRef,
    base: ModelRef,
    *,
    accuracy: float,
    heldout_sha256: str,
    margin: float,
) -> tuple[str, bool]:
    """Register a promoted round's policy (once per run, so a resumed campaign does not add a second
    version) and move the champion alias if it is at least as good as the champion.

    Returns:
        The version number and whether the alias now points at it.
    """
    if policy.adapter is None:
        raise ValueError("only a trained policy (with an adapter) is registered")
    client = client_for(cfg)
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if versions:
        version = max(versions, key=lambda v: int(v.version))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / POLICY_DIR
            shutil.copytree(policy.adapter, folder)
            base_ref = {"source": base.source, "base": base.base, "sha256": base.sha256}
            (folder / "base.json").write_text(json.dumps(base_ref, indent=2) + "\n", encoding="utf-8")
            client.log_artifacts(run_id, str(folder), POLICY_DIR)
        try:
            client.create_registered_model(name, description="Promoted selftrain policies (LoRA adapter + base).")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            "accuracy": repr(accuracy),
            "heldout_sha256": heldout_sha256,
            "adapter_sha256": policy.sha256,
            "base_sha256": base.sha256,
        }
        version = client.create_model_version(name, f"runs:/{run_id}/{POLICY_DIR}", run_id=run_id, tags=tags)
    best = champion(cfg, name)
    move = (
        best is None
        or str(best.version) == str(version.version)
        or best.tags.get("heldout_sha256") != heldout_sha256
        or should_promote(accuracy, float(best.tags.get("accuracy", "0")), margin)
    )
    if move:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version), move


def download_policy(cfg: TrackingConfig, version: ModelVersion, dest: str | Path) -> tuple[ModelRef, str]:
    """Download a version's adapter into `<dest>/adapter` and return its policy and the artifact URI of
    the adapter as the round run logged it (what `selftrain reproduce` downloads)."""
    run_id = str(version.run_id)
    client = client_for(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, POLICY_DIR, tmp))
        base = json.loads((local / "base.json").read_text(encoding="utf-8"))
        (local / "base.json").unlink()
        adapter = Path(dest) / "adapter"
        if adapter.exists():
            shutil.rmtree(adapter)
        adapter.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(local, adapter)
    policy = ModelRef(
        source=base["source"], base=base["base"], adapter=str(adapter.resolve()), sha256=sha256_dir(adapter)
    )
    return policy, f"runs:/{run_id}/adapter"
