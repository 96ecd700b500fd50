"""Unit tests of the generation step (tasks.generate): k records per prompt, bare prompts kept, seeded."""

from __future__ import annotations

from pathlib import Path

from configs.schema import GenerateConfig
from models.loading import load_policy
from models.sampling import HFSampler
from tasks.generate import generate_responses

PROMPTS = [
    {"id": "a", "prompt": "What is 2 plus 3?", "answer": "5"},
    {"id": "b", "prompt": "What is 7 minus 4?", "answer": "3"},
]


def test_k_samples_per_prompt_keep_the_bare_prompt_and_are_seeded(tiny_dir: Path) -> None:
    engine = HFSampler(*load_policy(str(tiny_dir)))
    cfg = GenerateConfig(k=3, temperature=1.0, max_new_tokens=12, batch_size=8)
    rows = generate_responses(engine, PROMPTS, cfg, template="Question: {prompt}\nAnswer:", seed=5)
    assert [(r["id"], r["sample"]) for r in rows] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert all(
        r["prompt"] == p["prompt"] and r["answer"] == p["answer"]
        for r, p in zip(rows, [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3, strict=True)
    )
    assert all(isinstance(r["response"], str) and "\n" not in r["response"] for r in rows)  # stopped at "\n"
    assert generate_responses(engine, PROMPTS, cfg, template="Question: {prompt}\nAnswer:", seed=5) == rows
    assert PROMPTS[0] == {"id": "a", "prompt": "What is 2 plus 3?", "answer": "5"}  # inputs untouched


def test_greedy_copies_agree_and_a_prefix_changes_the_input_not_the_record(tiny_dir: Path) -> None:
    engine = HFSampler(*load_policy(str(tiny_dir)))
    cfg = GenerateConfig(k=2, temperature=1e-6, max_new_tokens=12, batch_size=8)
    plain = generate_responses(engine, PROMPTS[:1], cfg, template="Question: {prompt}\nAnswer:", seed=1)
    assert plain[0]["response"] == plain[1]["response"]  # near-greedy: both samples agree
    prefix = "Question: What is 1 plus 1?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"
    shown = generate_responses(engine, PROMPTS[:1], cfg, template="Question: {prompt}\nAnswer:", seed=1, prefix=prefix)
    assert [r["prompt"] for r in shown] == [PROMPTS[0]["prompt"]] * 2  # the record keeps the bare prompt
