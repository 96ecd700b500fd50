"""The code of every registered policy, saved with it as MLflow's "models from code".

`tasks.champion_model.save_policy_model` passes this file's path to `mlflow.pyfunc.save_model`, which copies
it into the model folder, with `models/pyfunc_policy.py` under the folder's `code/`. Loading the model runs
this file (the last line hands MLflow the model) with `code/` on `sys.path`, so the model loads with
torch, transformers, PEFT and MLflow alone, never selftrain, and nothing of it is unpickled: a server
that sets `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false` loads it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc import PythonModel

ADAPTER, POLICY_JSON, BASE = "adapter", "policy.json", "base"  # names under the model's artifacts/


class ChampionModel(PythonModel):
    """Generates text with base + adapter; see `tasks.champion_model` for its input and output."""

    def load_context(self, context: Any) -> None:
        """Load base and adapter: the embedded base when the version carries one, else the referenced base."""
        # The copy under the model's code/, on sys.path while MLflow loads the model (a selftrain import here
        # would tie every registered model to selftrain).
        import pyfunc_policy  # type: ignore[import-not-found]

        settings = json.loads(Path(context.artifacts[POLICY_JSON]).read_text(encoding="utf-8"))
        base = context.artifacts.get(BASE) or settings["base"]["base"]
        if settings["base"]["source"] != "hub" and not Path(base).is_dir():
            raise FileNotFoundError(
                f"this version references its base model at {base}, which is not on this machine (a version "
                "carries only a small base); `selftrain export NAME/VERSION DIR --merged`, where the base is, "
                "writes a checkpoint that loads anywhere"
            )
        self._policy, self._settings = pyfunc_policy, settings
        self._model, self._tokenizer = pyfunc_policy.load_serving_policy(base, context.artifacts[ADAPTER])

    # The model's signature is given when it is saved (`signature`), so MLflow infers none from these hints.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        """Responses to the prompts in `model_input`: a DataFrame with a `prompt` column, a list of strings or
        one string. Greedy by default; `params` may set `max_new_tokens`, and `temperature` (> 0 samples),
        `top_p` and `seed` for sampling."""
        params = params or {}
        seed = params.get("seed")
        responses: list[str] = self._policy.generate_text(
            self._model,
            self._tokenizer,
            self._policy.prompt_list(model_input),
            template=self._settings["template"],
            max_new_tokens=int(params.get("max_new_tokens", self._settings["max_new_tokens"])),
            temperature=float(params.get("temperature", 0.0)),
            top_p=float(params.get("top_p", 1.0)),
            seed=None if seed is None else int(seed),
        )
        return responses


if __name__ != "tasks.champion_pyfunc":  # run by MLflow as a model's code, not imported by selftrain
    mlflow.models.set_model(ChampionModel())
