"""A promoted policy as an MLflow pyfunc model: what each registered version holds, loadable anywhere.

`mlflow.pyfunc.load_model("models:/selftrain-<name>@champion")` returns a model whose `predict` takes a
DataFrame with a `prompt` column, a list of strings or one string, and returns the greedy responses
(the campaign's prompt template applied first); `mlflow models serve` serves the same model over HTTP.

The model folder holds `artifacts/adapter/` (the LoRA adapter), `artifacts/policy.json` (the base
reference: source, path or hub id, content hash; the template and response length) and, for a base of
at most `EMBED_BASE_MAX_BYTES`, the base weights themselves under `artifacts/base/`: the tiny model
(a few MB) travels with every version and loads on a machine with no selftrain cache. A larger base
(the packaged Gemma, 1.1 GB a version) is only referenced: a hub id resolves on any machine, a local
path only where it exists. For a portable Gemma champion, `selftrain export NAME DIR --merged` writes
one merged checkpoint when asked, rather than 1.1 GB more in the store at every promotion.

The model is saved from code (MLflow's "models from code"): `tasks/champion_pyfunc.py` and
`models/pyfunc_policy.py` go into the folder as source, nothing is pickled, and loading the model imports
torch, transformers, PEFT and MLflow, never selftrain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import models.pyfunc_policy as pyfunc_policy
import tasks.champion_pyfunc as champion_pyfunc
from tasks.champion_pyfunc import ADAPTER, BASE, POLICY_JSON
from tasks.records import ModelRef

EMBED_BASE_MAX_BYTES = 256 * 1024 * 1024
REQUIREMENTS = ("mlflow", "torch", "transformers", "peft", "pandas")


def signature(max_new_tokens: int) -> ModelSignature:
    """The model's signature, shown by MLflow's UI and checked by `mlflow models serve`: one string column in (a
    list of prompts, or a DataFrame's `prompt` column), one out, and the decoding params (`max_new_tokens`;
    `temperature`, 0 for greedy, `top_p` and `seed` for sampling). The column is unnamed, so a plain list of
    strings still passes (MLflow hands it over as column 0, `prompt_list`)."""
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", max_new_tokens),
                ParamSpec("temperature", "double", 0.0),
                ParamSpec("top_p", "double", 1.0),
                ParamSpec("seed", "long", None),
            ]
        ),
    )


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """The logger `name` at WARNING within the block (its INFO lines would land in every campaign's output)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def embeds_base(base: ModelRef) -> bool:
    """Whether a version carries its base's weights: a local folder of at most `EMBED_BASE_MAX_BYTES`."""
    path = Path(base.base)
    if base.source == "hub" or not path.is_dir():
        return False
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) <= EMBED_BASE_MAX_BYTES


def save_policy_model(
    folder: str | Path,
    policy: ModelRef,
    base: ModelRef,
    *,
    template: str = "{prompt}",
    max_new_tokens: int = 64,
    example: str | None = None,
) -> None:
    """Write the MLflow model of a trained policy into `folder` (absent or empty).

    Args:
        folder: The model folder (MLmodel, champion_pyfunc.py, code/, artifacts/).
        policy: The trained policy (its adapter is logged).
        base: The base it was trained on (embedded when `embeds_base`, else referenced).
        template: The prompt template the policy was trained with.
        max_new_tokens: The default response length.
        example: A prompt as the model takes it, saved as the model's input example (`input_example.json`, and
            `serving_input_example.json`: the request body `mlflow models serve` takes); with the signature given,
            MLflow saves it without loading the model.
    """
    if policy.adapter is None:
        raise ValueError("only a trained policy (with an adapter) is saved as a model")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        shutil.copytree(policy.adapter, stage / ADAPTER)
        settings = {
            "base": {"source": base.source, "base": base.base, "sha256": base.sha256},
            "adapter_sha256": policy.sha256,
            "template": template,
            "max_new_tokens": max_new_tokens,
        }
        (stage / POLICY_JSON).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        artifacts = {ADAPTER: str(stage / ADAPTER), POLICY_JSON: str(stage / POLICY_JSON)}
        if embeds_base(base):
            shutil.copytree(base.base, stage / BASE)
            artifacts[BASE] = str(stage / BASE)
        with warnings.catch_warnings(), quiet_logger("mlflow.pyfunc"):  # "Validating input example against ..."
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            mlflow.pyfunc.save_model(
                str(folder),
                python_model=champion_pyfunc.__file__,
                code_paths=[pyfunc_policy.__file__],
                artifacts=artifacts,
                signature=signature(max_new_tokens),
                input_example=[example] if example is not None else None,
                # Listed, so MLflow does not load the model in a subprocess to infer them.
                # Without a local version label ("2.13.0+cpu"), which PyPI never serves: an environment MLflow
                # builds (`mlflow models serve`'s virtualenv, `build-docker`) installs the public release.
                pip_requirements=[f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS],
            )
