"""`prompts.chat` on the tiny model given a chat template: rendering, generation, one SFT step and its loss mask."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from configs.loader import ConfigError, load_config
from configs.schema import GenerateConfig, TrainConfig
from models.loading import load_policy
from models.sampling import HFSampler
from tasks.generate import generate_responses
from tasks.prompts import ChatFormat, chat_example, few_shot_turns
from tasks.train_sft import make_trainer, train_sft

TEMPLATE = "Question: {prompt}\nAnswer:"
# A small chat template in the usual shape: BOS, user turns, assistant turns ended by EOS, a generation prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant:{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def chat_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's tiny model whose tokenizer has `CHAT_TEMPLATE` (a plain local model folder)."""
    out = tmp_path_factory.mktemp("tiny-chat") / "model"
    shutil.copytree(tiny_dir, out)
    (out / ".content.json").unlink()  # no longer the folder selftrain built: its content record would not match
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return out


def test_prompts_render_as_chat_turns_behind_the_worked_examples(chat_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    config = load_config("tiny", ["prompts.few_shot=2", "prompts.chat=true"])
    turns = few_shot_turns(config)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0]["content"].startswith("Question: ") and turns[0]["content"].endswith("\nAnswer:")
    assert not turns[1]["content"].startswith(" ")  # a reply starts right after the generation prompt

    prefix, tails = ChatFormat(tokenizer, tuple(turns)).inputs(["Question: 2 + 3?\nAnswer:"])
    shots = "".join(
        f"User: {turns[i]['content']}\nAssistant:{turns[i + 1]['content']}<eos>" for i in range(0, len(turns), 2)
    )
    assert prefix == "<bos>" + shots  # the examples' own rendering: its KV cache is computed once
    assert tails == ["User: Question: 2 + 3?\nAnswer:\nAssistant:"]
    # The tiny tokenizer adds no BOS itself, so the template's BOS is kept, once.
    assert tokenizer(prefix + tails[0])["input_ids"].count(tokenizer.bos_token_id) == 1
    assert ChatFormat(tokenizer).inputs(["hi"]) == ("", ["<bos>User: hi\nAssistant:"])


def test_a_tokenizer_without_a_chat_template_is_refused(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="prompts.chat: the policy's tokenizer has no chat template"):
        ChatFormat(AutoTokenizer.from_pretrained(tiny_dir)).inputs(["hi"])


def test_generation_reads_the_assistant_reply(chat_dir: Path) -> None:
    model, tokenizer = load_policy(str(chat_dir))
    seen: list[tuple[list[str], str]] = []

    class Recording(HFSampler):  # the real sampler, remembering what it was asked
        def sample(self, prompts, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((list(prompts), kwargs["prefix"]))
            return super().sample(prompts, **kwargs)

    prompts = [{"id": "a", "prompt": "2 + 3?"}, {"id": "b", "prompt": "7 - 4?"}]
    cfg = GenerateConfig(k=2, temperature=1.0, max_new_tokens=12, stop=["\n"], batch_size=4)
    rows = generate_responses(
        Recording(model, tokenizer), prompts, cfg, template=TEMPLATE, seed=0, chat=ChatFormat(tokenizer)
    )
    assert seen == [
        (["<bos>User: Question: 2 + 3?\nAnswer:\nAssistant:", "<bos>User: Question: 7 - 4?\nAnswer:\nAssistant:"], "")
    ]
    assert [(r["id"], r["prompt"], r["sample"]) for r in rows] == [
        ("a", "2 + 3?", 0),
        ("a", "2 + 3?", 1),
        ("b", "7 - 4?", 0),
        ("b", "7 - 4?", 1),
    ]
    # The reply is what follows the generation prompt: the same text as sampling the rendered chat directly.
    direct = HFSampler(model, tokenizer).sample(
        seen[0][0],
        n=2,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=12,
        stop=["\n"],
        seed=0,
        batch_size=4,
        prompt_ids=["a", "b"],
    )
    assert [r["response"] for r in rows] == [text for texts in direct for text in texts]
    assert all("<eos>" not in r["response"] and "User:" not in r["response"] for r in rows)


def test_one_sft_step_on_conversational_rows_learns_only_the_assistant_tokens(chat_dir: Path, tmp_path: Path) -> None:
    replies = [" 2 + 3 = 5. The answer is 5.", " 7 - 4 = 3. The answer is 3."]
    examples = [chat_example(f"Question: {q}\nAnswer:", r) for q, r in zip(["2 + 3?", "7 - 4?"], replies, strict=True)]
    cfg = TrainConfig(epochs=1, batch_size=2, learning_rate=5e-3)

    model, tokenizer = load_policy(str(chat_dir))
    trainer = make_trainer(model, tokenizer, examples, cfg, str(tmp_path / "work"), seed=0, fresh_adapter=True)
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels, reply in zip(batch["input_ids"], batch["labels"], replies, strict=True):
        learned = ids[labels != -100].tolist()
        shown = ids[labels == -100].tolist()
        assert tokenizer.decode(learned) == reply + "<eos>"  # the reply and its end of turn, nothing else
        prompt_text = tokenizer.decode([t for t in shown if t != tokenizer.pad_token_id])
        assert prompt_text.endswith("Answer:\nAssistant:") and reply not in prompt_text

    metrics = train_sft(str(chat_dir), None, examples, cfg, tmp_path / "adapter", seed=0)
    assert metrics["steps"] == 1.0 and math.isfinite(metrics["loss"])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_chat_is_refused_with_trainers_that_do_not_train_on_it() -> None:
    for method in ("dpo", "superhf"):
        with pytest.raises(ConfigError, match=f"prompts.chat=true .* train.method={method}"):
            load_config("tiny", ["prompts.chat=true", f"train.method={method}"])
    assert load_config("tiny", ["prompts.chat=true"]).prompts.chat


def test_a_template_bos_is_not_doubled_when_the_tokenizer_adds_its_own(chat_dir: Path) -> None:
    from tokenizers import processors

    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )  # as Gemma's and Llama's tokenizers do
    assert tokenizer("hi")["input_ids"][0] == bos
    prefix, tails = ChatFormat(tokenizer).inputs(["hi"])
    assert (prefix, tails) == ("", ["User: hi\nAssistant:"])
    assert tokenizer(tails[0])["input_ids"].count(bos) == 1
