"""The MLflow model registry: every policy that became its campaign's champion as a model version, the alias
`champion` on the best.

A version is an MLflow pyfunc model, logged as an MLflow logged model named `policy` whose source run is the
round run (MLflow 3's Models tab of the experiment and the run's outputs list it; `tasks/champion_model.py`):
the LoRA adapter, a reference to the base model (source, path or hub id,
content hash) and, for a small base, the base weights, so `mlflow.pyfunc.load_model` and `mlflow models
serve` answer prompts with it. (MLflow's transformers flavour reloads a PEFT model on a local base with
random base weights, shared NOTES; hence the pyfunc.) The registered model is named
`selftrain-<campaign name>`; the tracking store's registry is used, so the embedded SQLite store works
as well as a server.

The alias rule (`tasks.gate.alias_displaces`, the gate's rule with no margin): a version takes the alias
only from a champion scored on the same validation set (same content hash, tag `heldout_sha256`) and only
with at least its validation accuracy. So the alias points at the best validation accuracy among versions
comparable with the first, and never slides down a little at a time; a version scored on another
validation set cannot be compared and does not displace (register it under another campaign name).

Several campaigns may promote into one registered model at once, and MLflow has no compare-and-set on
aliases. So the champion is defined as what the rule gives when the versions are taken one after
another in version order (`serial_champion`), and every writer moves the alias until it points there
(`settle_champion`): whatever the interleaving, the last writer's check runs after every version exists,
so the final alias is that of a serial registration. A hand-moved alias is replaced at the next
promotion.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

from mlflow import MlflowClient
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus, Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from configs.schema import TrackingConfig
from configs.schema_steps import GREEDY
from tasks.champion_model import ADAPTER, BASE, POLICY_JSON, embeds_base, save_policy_model
from tasks.gate import alias_displaces
from tasks.records import ModelRef, sha256_dir
from tasks.stats import accuracy_text
from tasks.tracking import ArtifactGone, artifact_names, download_artifact
from tasks.tracking_store import client_for, retry_conflicts, tracking_uri

CHAMPION = "champion"
POLICY_DIR = "policy"  # the logged model's name; for versions registered before logged models, the run's folder
MODEL_TYPE = "selftrain-policy"  # the logged model's type


class Registration(NamedTuple):
    """What `register_policy` did: the version number, whether the alias now points at it, and whether this
    call made the version (False when a resumed round's run already had one)."""

    version: str
    champion: bool
    made: bool


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
    interval: tuple[float, float] | None = None,
    decoding: str = GREEDY,
    template: str = "{prompt}",
    max_new_tokens: int = 64,
    example: str | None = None,
) -> Registration:
    """Register a promoted round's policy (once per run, so a resumed campaign does not add a second
    version) and settle the champion alias by the alias rule (`settle_champion`).

    `heldout_sha256` is the content hash of the validation set `accuracy` was measured on (the alias takes no
    margin: `tasks.gate.alias_displaces`), `interval` its 95% interval (in the description and the tags
    `accuracy_ci_low`, `accuracy_ci_high`), and `decoding` how it was decoded (`EvaluateConfig.decoding`): only
    versions scored on the same set the same way are compared. `template` and `max_new_tokens` are what the
    served model formats prompts with and generates (greedily, whatever `decoding` says); `example`, a prompt it
    takes, is saved as the model's input example.

    Returns:
        The version, whether the alias points at it and whether this call made it (`Registration`).
    """
    if policy.adapter is None:
        raise ValueError("only a trained policy (with an adapter) is registered")
    client = client_for(cfg)
    version = _run_version(client, name, run_id)
    made = version is None
    if version is None:
        run = client.get_run(run_id)
        model = _logged_policy(client, run)
        if model is None:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / POLICY_DIR
                save_policy_model(
                    folder, policy, base, template=template, max_new_tokens=max_new_tokens, example=example
                )
                model = _log_policy(client, run, folder)
        _ensure_registered_model(client, name)
        tags = {
            "accuracy": repr(accuracy),
            "heldout_sha256": heldout_sha256,
            "decoding": decoding,
            "adapter_sha256": policy.sha256,
            "base_sha256": base.sha256,
        }
        if interval is not None:
            tags |= {"accuracy_ci_low": repr(interval[0]), "accuracy_ci_high": repr(interval[1])}

        carried = "carries its base" if embeds_base(base) else f"references its base at {base.base}"
        description = (
            f"Validation accuracy {accuracy_text(accuracy, interval)} ({decoding}). "
            f"A LoRA adapter that {carried}; "
            "`selftrain export NAME/VERSION DIR --merged` writes a checkpoint that loads anywhere."
        )

        def create() -> ModelVersion:  # a retry first looks for the version an earlier attempt made
            made = _run_version(client, name, run_id)
            # The model's storage location as the source, not `models:/<id>`: MLflow's SQL registry resolves such a
            # URI with a client on the process's global tracking URI (its own TODO, 3.17), which is not this store's
            # here, nor the server's own store in an MLflow server.
            return made or client.create_model_version(
                name,
                model.artifact_location,
                run_id=run_id,
                tags=tags,
                description=description,
                model_id=model.model_id,
            )

        version = retry_conflicts(create, f"model version of run {run_id} in {name}")
    best = settle_champion(cfg, name)
    aliased = best is not None and str(best.version) == str(version.version)
    return Registration(str(version.version), aliased, made)


def _log_policy(client: MlflowClient, run: Run, folder: Path) -> LoggedModel:
    """Log the model in `folder` as a logged model of the run's experiment, with the run as its source and
    among the run's outputs (at the run's round step)."""
    run_id = run.info.run_id
    model = client.create_logged_model(
        run.info.experiment_id, name=POLICY_DIR, source_run_id=run_id, model_type=MODEL_TYPE
    )
    client.log_model_artifacts(model.model_id, str(folder))
    ready = client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, int(run.data.tags.get("selftrain.round", "0")))])
    return ready


def _logged_policy(client: MlflowClient, run: Run) -> LoggedModel | None:
    """A ready policy model the run already logged (a registration a kill cut short), or None."""
    found = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{POLICY_DIR}'",
        max_results=10,
    )
    return next((model for model in found if model.status == LoggedModelStatus.READY), None)


def _run_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


REGISTERED_DESCRIPTION = (
    "Promoted selftrain policies: each version a LoRA adapter with its base, carried when small, else referenced "
    "by path (the selftrain cache); the alias `champion` is the best on validation."
)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    def create() -> None:
        try:
            client.create_registered_model(name, description=REGISTERED_DESCRIPTION)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":  # another campaign created it: fine
                raise

    retry_conflicts(create, f"registered model {name}")


def displaces(candidate: ModelVersion, incumbent: ModelVersion) -> bool:
    """The alias rule between two registered versions (`tasks.gate.alias_displaces` on their tags): their validation
    sets and decodings must match (a version registered before the `decoding` tag was greedy)."""
    return alias_displaces(
        float(candidate.tags.get("accuracy", "0")),
        scored_on(candidate),
        float(incumbent.tags.get("accuracy", "0")),
        scored_on(incumbent),
    )


def scored_on(version: ModelVersion) -> str | None:
    """What a version's accuracy was measured on: its validation set's hash and its decoding; None without a set."""
    heldout = version.tags.get("heldout_sha256")
    return None if heldout is None else f"{heldout} decoded {version.tags.get('decoding', GREEDY)}"


def serial_champion(versions: list[ModelVersion]) -> ModelVersion | None:
    """The champion the promotion rule gives when `versions` are registered one after another in version
    order: the champion every writer agrees on, however their registrations interleaved."""
    best: ModelVersion | None = None
    for version in sorted(versions, key=lambda v: int(v.version)):
        if best is None or displaces(version, best):
            best = version
    return best


def settle_champion(cfg: TrackingConfig, name: str, *, attempts: int = 10) -> ModelVersion | None:
    """Point the alias at `serial_champion` of all versions, then read both again until they agree.

    The read after each move is what makes this a compare-and-set: a writer that moved the alias on a
    stale list of versions sees the newer versions at its check and moves it again, and a writer stops
    only when the alias is the champion of every version that exists at its check.

    Returns:
        The champion version (None when the model has no versions).

    Raises:
        RuntimeError: the alias kept changing under this writer for `attempts` rounds.
    """
    client = client_for(cfg)
    for _ in range(attempts):
        best = serial_champion(list(client.search_model_versions(f"name='{name}'")))
        if best is None:
            return None
        current = champion(cfg, name)
        if current is not None and str(current.version) == str(best.version):
            return best
        retry_conflicts(partial(client.set_registered_model_alias, name, CHAMPION, best.version), f"alias of {name}")
        time.sleep(random.uniform(0.0, 0.05))  # let a concurrent writer's move land before the check
    raise RuntimeError(f"registered model {name}: the {CHAMPION} alias kept moving over {attempts} checks")


def download_policy(cfg: TrackingConfig, version: ModelVersion, dest: str | Path) -> tuple[ModelRef, str]:
    """Download a version's adapter into `<dest>/adapter` and return its policy and the artifact URI of
    the adapter as the round run logged it (what `selftrain reproduce` downloads)."""
    run_id = str(version.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        local, settings = _download_adapter(cfg, version, tmp)
        base = settings["base"]
        adapter = Path(dest) / "adapter"
        if adapter.exists():
            shutil.rmtree(adapter)
        adapter.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(local, adapter)
    policy = ModelRef(
        source=base["source"], base=base["base"], adapter=str(adapter.resolve()), sha256=sha256_dir(adapter)
    )
    return policy, f"runs:/{run_id}/adapter"


def _names(cfg: TrackingConfig, uri: str) -> set[str]:
    """The names of the files and folders directly under the artifact URI `uri`."""
    return artifact_names(uri, tracking_uri(cfg))


def _download(cfg: TrackingConfig, uri: str, dest: str, version: ModelVersion) -> Path:
    """The artifact (file or folder) at `uri`, part of `version`, downloaded into `dest`.

    Raises:
        ValueError: nothing is at `uri` (deleted or moved in the store), naming the version and the store.
    """
    try:
        return download_artifact(uri, dest, tracking_uri(cfg))
    except ArtifactGone:
        raise ValueError(
            f"{version.name} version {version.version} has no artifact {uri} in {tracking_uri(cfg)} "
            "(was it deleted or moved?)"
        ) from None


def _download_adapter(cfg: TrackingConfig, version: ModelVersion, dest: str) -> tuple[Path, dict]:
    """A version's adapter folder and settings (`policy.json`: its `base` reference with `source`, `base`,
    `sha256`; the template), downloaded into `dest`.

    Reads the pyfunc model's `artifacts/` (the base weights are not downloaded), or a version registered
    before versions were MLflow models (`policy/` = adapter files + `base.json`).
    """
    root = str(version.source)  # the logged model's location, or `runs:/<run>/policy` for older versions
    if "MLmodel" not in _names(cfg, root):
        local = _download(cfg, root, dest, version)
        base = json.loads((local / "base.json").read_text(encoding="utf-8"))
        (local / "base.json").unlink()
        return local, {"base": base}
    adapter = _download(cfg, f"{root}/artifacts/{ADAPTER}", dest, version)
    settings = _download(cfg, f"{root}/artifacts/{POLICY_JSON}", dest, version)
    return adapter, json.loads(settings.read_text(encoding="utf-8"))


def resolve_version(cfg: TrackingConfig, spec: str) -> ModelVersion:
    """The version `NAME[@ALIAS|/VERSION]` names (the champion without either); NAME is the registered name
    or the campaign name (`selftrain-` is added when only that exists).

    Raises:
        ValueError: one line naming the model, alias or version that does not exist.
    """
    client = client_for(cfg)
    spec = spec.removeprefix("models:/")  # MLflow's model URI says the same: models:/NAME@ALIAS, models:/NAME/VERSION
    name, alias, number = spec, CHAMPION, None
    if "@" in spec:
        name, alias = spec.split("@", 1)
    elif "/" in spec:
        name, number = spec.rsplit("/", 1)
    names = [name] if name.startswith("selftrain-") else [name, registered_name(name)]
    known = [n for n in names if client.search_registered_models(f"name='{n}'")]
    if not known:
        raise ValueError(f"{spec}: no registered model named {' or '.join(names)} in {tracking_uri(cfg)}")
    name = known[0]
    try:
        if number is not None:
            return client.get_model_version(name, number)
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        aliases = sorted(client.get_registered_model(name).aliases)
        what = f"version {number}" if number is not None else f"alias {alias!r}"
        raise ValueError(f"{spec}: {name} has no {what} (versions {versions}, aliases {aliases})") from None


def download_version(cfg: TrackingConfig, version: ModelVersion, dest: str | Path) -> tuple[Path, str, dict]:
    """Download what a version needs to run into `dest`: (adapter folder, base folder or hub id, settings).

    The base is the version's embedded copy when it carries one, else its reference: a hub id, or a local
    folder that must exist on this machine. `settings` is the model's `policy.json` (template, base).

    Raises:
        ValueError: the referenced local base is not on this machine, or a file of the version is gone from the
            store.
    """
    adapter, settings = _download_adapter(cfg, version, str(dest))
    base = settings["base"]
    root = str(version.source)
    if BASE in _names(cfg, f"{root}/artifacts"):
        return adapter, str(_download(cfg, f"{root}/artifacts/{BASE}", str(dest), version)), settings
    if base["source"] == "hub" or Path(base["base"]).is_dir():
        return adapter, str(base["base"]), settings
    raise ValueError(
        f"{version.name} version {version.version}: its base {base['base']} is not on this machine "
        "(the version references its base rather than carrying it; run the export where the base is)"
    )
