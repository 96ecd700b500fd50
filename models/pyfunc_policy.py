"""A registered policy outside selftrain: load base + adapter, answer prompts, write portable checkpoints.

This module is what a served or exported champion runs on another machine, so it imports only torch,
transformers and PEFT: `tasks/champion_model.py` saves it as source beside `tasks/champion_pyfunc.py` in each
registered MLflow model, which imports it by its file name (no selftrain import, no selftrain cache, no
config needed to load one). Generation is greedy unless a temperature is given, batched, padded on the
left, and returns only the new text of each prompt.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

BATCH_SIZE = 16
HOW_TO_LOAD = """# A selftrain policy: LoRA adapter + its base model

Load it with PEFT and transformers, no selftrain needed:

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained("{base}")
    model = PeftModel.from_pretrained(base, "{adapter}")
    tokenizer = AutoTokenizer.from_pretrained("{base}")

{where}
Prompts were formatted with the template {template!r} during training.
"""

MERGED_HOW_TO_LOAD = """# A selftrain policy: a merged checkpoint

The LoRA adapter is folded into its base: transformers alone loads it, no selftrain or PEFT needed:

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained("<this folder>")
    tokenizer = AutoTokenizer.from_pretrained("<this folder>")

Prompts were formatted with the template {template!r} during training: format yours the same way.
"""


def load_serving_policy(
    base: str | Path, adapter: str | Path | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy in float32 eval mode and its tokenizer padding on the left.

    Args:
        base: A model directory or a hub id.
        adapter: A `PeftModel.save_pretrained` folder, or None for the bare base.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model: Any = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if tokenizer.pad_token_id is None:  # a batch needs a pad; positions under it are masked out
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model, tokenizer


def prompt_list(model_input: Any) -> list[str]:
    """The prompts in a pyfunc input: a DataFrame or mapping with a `prompt` column, a list of strings, or one.

    Raises:
        ValueError: an input with no `prompt` column or with a non-string prompt.
    """
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # a pandas DataFrame, as the scoring server passes `dataframe_split`
        if list(model_input.columns) == [0]:  # a list of strings, as MLflow hands it over under the signature
            model_input = model_input[0]
        elif "prompt" not in model_input.columns:
            # The signature's one unnamed column: MLflow hands over a DataFrame's first column alone.
            raise ValueError(
                f"input: expected a 'prompt' column, got columns {list(model_input.columns)} (MLflow passes this "
                "model a DataFrame's first column only: put 'prompt' first)"
            )
        else:
            model_input = model_input["prompt"]
    elif isinstance(model_input, dict):
        if "prompt" not in model_input:
            raise ValueError(f"input: expected a 'prompt' key, got keys {sorted(model_input)}")
        model_input = model_input["prompt"]
    prompts = [model_input] if isinstance(model_input, str) else list(model_input)
    if len(prompts) == 1 and not isinstance(prompts[0], str) and hasattr(prompts[0], "__iter__"):
        prompts = list(prompts[0])  # {"prompt": [...]}: MLflow makes it one row holding the list
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ValueError(f"input: every prompt must be a string, got {type(bad[0]).__name__}")
    return prompts


def sampling(temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None) -> dict[str, Any]:
    """`generate`'s decoding arguments: greedy at temperature 0, else sampling at `temperature` from the
    smallest set of tokens holding `top_p` of the probability, seeded by `seed` when one is given.

    Raises:
        ValueError: a negative temperature or a `top_p` outside (0, 1], named as the parameter it came from.
    """
    if not temperature >= 0:  # also refuses NaN
        raise ValueError(f"params: temperature must be >= 0 (0 is greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"params: top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return {"do_sample": False}
    if seed is not None:
        torch.manual_seed(seed)
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


@torch.no_grad()
def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    template: str = "{prompt}",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> list[str]:
    """Responses to `prompts`, each formatted with `template` first; only the new text is returned. Greedy
    unless `temperature` > 0 (`sampling`)."""
    decoding = sampling(temperature, top_p, seed)
    responses: list[str] = []
    for start in range(0, len(prompts), BATCH_SIZE):
        texts = [template.format(prompt=p) for p in prompts[start : start + BATCH_SIZE]]
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        out = cast(Any, model).generate(  # PreTrainedModel's stubs type generate as a Tensor
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **decoding,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        responses += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return responses


def save_merged(base: str | Path, adapter: str | Path, dest: str | Path, *, template: str = "{prompt}") -> None:
    """Fold the adapter into the base (`merge_and_unload`) and save a standard checkpoint with its tokenizer and
    a README.md saying how to load it and which prompt template it was trained with."""
    model, tokenizer = load_serving_policy(base, adapter)
    merged = cast(Any, model).merge_and_unload()  # a PeftModel, typed as its base class
    merged.save_pretrained(str(dest))
    tokenizer.padding_side = "right"  # the library default: a plain `from_pretrained` user expects it
    tokenizer.save_pretrained(str(dest))
    (Path(dest) / "README.md").write_text(MERGED_HOW_TO_LOAD.format(template=template), encoding="utf-8")


def save_adapter(adapter: str | Path, dest: str | Path, *, base: str | Path, hub_id: bool, template: str) -> None:
    """Copy the adapter to `dest` with a base that resolves on another machine, and a README.md saying how (a
    local base's tokenizer goes beside the adapter too).

    A hub base stays a hub id. A local base is copied to `dest/base/` and the adapter config names it by
    the relative path `base`: PEFT resolves that against the working directory, so load from inside
    `dest` (`AutoPeftModelForCausalLM.from_pretrained(".")`) or pass `dest/base` yourself (the README).
    """
    dest = Path(dest)
    shutil.copytree(adapter, dest, dirs_exist_ok=True)
    if hub_id:
        base_name, where = str(base), f"The base `{base}` is a Hugging Face hub id."
    else:
        shutil.copytree(base, dest / "base")
        # The base's tokenizer beside the adapter too, as a PEFT user saves it: AutoTokenizer loads the folder.
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(dest))
        base_name = "base"
        where = (
            "The base is the folder `base/` beside the adapter; `adapter_config.json` names it by the relative\n"
            "path `base`, which PEFT resolves against the working directory: run from inside this folder\n"
            '(`AutoPeftModelForCausalLM.from_pretrained(".")`) or pass `<this folder>/base` as above.\n'
        )
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shown_base = base_name if hub_id else "<this folder>/base"
    (dest / "README.md").write_text(
        HOW_TO_LOAD.format(base=shown_base, adapter="<this folder>", where=where, template=template), encoding="utf-8"
    )
