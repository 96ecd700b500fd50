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

The pyfunc class and `models/pyfunc_policy.py` are pickled by value (cloudpickle), so loading the
model imports torch, transformers, PEFT and MLflow, never selftrain.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import models.pyfunc_policy as pyfunc_policy
from tasks.records import ModelRef

EMBED_BASE_MAX_BYTES = 256 * 1024 * 1024
ADAPTER, POLICY_JSON, BASE = "adapter", "policy.json", "base"  # names under the model's artifacts/
REQUIREMENTS = ("mlflow", "torch", "transformers", "peft", "pandas")


class ChampionModel(PythonModel):
    """Generates text with base + adapter; see the module docstring for its input and output."""

    def load_context(self, context: Any) -> None:
        """Load base and adapter: the embedded base when the version carries one, else the referenced base."""
        settings = json.loads(Path(context.artifacts[POLICY_JSON]).read_text(encoding="utf-8"))
        base = context.artifacts.get(BASE) or settings["base"]["base"]
        self._settings = settings
        self._model, self._tokenizer = pyfunc_policy.load_serving_policy(base, context.artifacts[ADAPTER])

    # The model's signature is given when it is saved (`signature`), so MLflow infers none from these hints.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        """Greedy responses to the prompts in `model_input`: a DataFrame with a `prompt` column, a list of
        strings or one string (`params` may set `max_new_tokens`)."""
        max_new_tokens = int((params or {}).get("max_new_tokens", self._settings["max_new_tokens"]))
        return pyfunc_policy.generate_text(
            self._model,
            self._tokenizer,
            pyfunc_policy.prompt_list(model_input),
            template=self._settings["template"],
            max_new_tokens=max_new_tokens,
        )


def signature(max_new_tokens: int) -> ModelSignature:
    """The model's signature, shown by MLflow's UI and checked by `mlflow models serve`: one string column in (a
    list of prompts, or a DataFrame's `prompt` column), one out, and the `max_new_tokens` param. The column is
    unnamed, so a plain list of strings still passes (MLflow hands it over as column 0, `prompt_list`)."""
    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", max_new_tokens)]),
    )


def embeds_base(base: ModelRef) -> bool:
    """Whether a version carries its base's weights: a local folder of at most `EMBED_BASE_MAX_BYTES`."""
    path = Path(base.base)
    if base.source == "hub" or not path.is_dir():
        return False
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) <= EMBED_BASE_MAX_BYTES


_BY_VALUE_LOCK = threading.Lock()
_BY_VALUE_USERS: dict[str, int] = {}


@contextlib.contextmanager
def _pickled_by_value(*modules: ModuleType) -> Iterator[None]:
    # cloudpickle's by-value registry is process-wide: count the users of each module, so that one thread
    # finishing its save does not unregister a module another thread is pickling (campaigns promoting at once).
    with _BY_VALUE_LOCK:
        for module in modules:
            if _BY_VALUE_USERS.get(module.__name__, 0) == 0:
                cloudpickle.register_pickle_by_value(module)
            _BY_VALUE_USERS[module.__name__] = _BY_VALUE_USERS.get(module.__name__, 0) + 1
    try:
        yield
    finally:
        with _BY_VALUE_LOCK:
            for module in modules:
                _BY_VALUE_USERS[module.__name__] -= 1
                if _BY_VALUE_USERS[module.__name__] == 0:
                    cloudpickle.unregister_pickle_by_value(module)


def save_policy_model(
    folder: str | Path, policy: ModelRef, base: ModelRef, *, template: str = "{prompt}", max_new_tokens: int = 64
) -> None:
    """Write the MLflow model of a trained policy into `folder` (absent or empty).

    Args:
        folder: The model folder (MLmodel, python_model.pkl, artifacts/).
        policy: The trained policy (its adapter is logged).
        base: The base it was trained on (embedded when `embeds_base`, else referenced).
        template: The prompt template the policy was trained with.
        max_new_tokens: The default response length.
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
        with _pickled_by_value(pyfunc_policy, __import__(__name__, fromlist=["_"])), warnings.catch_warnings():
            # No input example: MLflow would load the policy (the 1.1 GB Gemma) to check it at every registration.
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            mlflow.pyfunc.save_model(
                str(folder),
                python_model=ChampionModel(),
                artifacts=artifacts,
                signature=signature(max_new_tokens),
                # Listed, so MLflow does not load the model in a subprocess to infer them.
                pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
            )
