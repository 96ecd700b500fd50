"""DPO: preference pairs from judged samples (unit), and LoRA DPO on the tiny model (only LoRA changes, margin up)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from configs.schema import TrainConfig
from models.loading import load_policy
from models.losses import completion_logps
from tasks.arithmetic import sample_problems
from tasks.train_dpo import gold_pairs, preference_pairs, to_dpo_examples, train_dpo

TEMPLATE = "Question: {prompt}\nAnswer:"


def judged(pid: str, *samples: tuple[str, float, bool]) -> list[dict]:
    return [
        {"id": pid, "prompt": f"q-{pid}", "sample": i, "response": text, "score": score, "correct": ok}
        for i, (text, score, ok) in enumerate(samples)
    ]


def test_score_rule_pairs_best_with_worst_and_skips_ties() -> None:
    rows = (
        judged("a", ("a0", 0.2, False), ("a1", 0.9, True), ("a2", 0.9, True), ("a3", 0.2, False))
        + judged("b", ("b0", 1.0, True), ("b1", 1.0, True))
        + judged("c", ("same", 1.0, True), (" same ", 0.0, False))
    )
    pairs = preference_pairs(rows, "score")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a1", "a3")]  # earliest best, latest worst
    assert pairs[0]["chosen_score"] == 0.9 and pairs[0]["rejected_score"] == 0.2


def test_correct_rule_pairs_right_with_wrong() -> None:
    rows = judged("a", ("a0", 0.1, False), ("a1", 0.0, True), ("a2", 0.7, False)) + judged("b", ("b0", 1.0, True))
    pairs = preference_pairs(rows, "correct")
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [("a", "a1", "a0")]
    with pytest.raises(ValueError, match="unknown pair rule"):
        preference_pairs(rows, "length")


def test_gold_pairs_prefer_the_real_answer_over_the_worst_sample() -> None:
    rows = judged("a", ("a0", 1.0, True), ("a1", 0.0, False)) + judged("b", ("b0", 1.0, True))
    gold = [
        {"id": "a", "prompt": "q-a", "response": "gold-a", "score": 1.0, "source": "gold"},
        {"id": "b", "prompt": "q-b", "response": "gold-b", "score": 1.0, "source": "gold"},
    ]
    assert [(p["chosen"], p["rejected"]) for p in gold_pairs(gold, rows)] == [("gold-a", "a1")]
    assert preference_pairs(rows + gold, "score")[0]["chosen"] == "a0"  # gold rows never enter sample pairs


def pair_examples(n: int) -> list[dict[str, str]]:
    """Right worked solutions preferred over the off-by-one answers the tiny model is biased toward."""
    problems = sample_problems(n, split="train", seed=7)
    pairs = [
        {"prompt": p["prompt"], "chosen": p["solution"], "rejected": f" The answer is {int(p['answer']) + 1}."}
        for p in problems
    ]
    return to_dpo_examples(pairs, TEMPLATE)


def margins(base: Path, policy: str | None, reference: str | None, examples: list[dict[str, str]]) -> torch.Tensor:
    """Per pair: (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))."""
    model, tok = load_policy(str(base), policy)
    ref, _ = load_policy(str(base), reference)
    prompts = [e["prompt"] for e in examples]
    out = []
    for key in ("chosen", "rejected"):
        texts = [e[key] for e in examples]
        out.append(completion_logps(model, tok, prompts, texts) - completion_logps(ref, tok, prompts, texts))
    return out[0] - out[1]


def test_dpo_changes_only_lora_weights_and_raises_the_margin(tiny_dir: Path, tmp_path: Path) -> None:
    examples = pair_examples(24)
    cfg = TrainConfig(learning_rate=3e-3, epochs=2, batch_size=8, dpo_beta=0.1)
    base_state = {k: v.clone() for k, v in load_policy(str(tiny_dir))[0].state_dict().items()}

    metrics = train_dpo(str(tiny_dir), None, examples, cfg, tmp_path / "round1", seed=0)
    assert metrics["steps"] == 6 and torch.isfinite(torch.tensor(metrics["loss"]))
    saved = load_file(tmp_path / "round1" / "adapter_model.safetensors")
    assert saved and all("lora_" in key for key in saved)
    model, _ = load_policy(str(tiny_dir), str(tmp_path / "round1"))
    merged_names = {k.replace("base_model.model.", "").replace(".base_layer", "") for k in model.state_dict()}
    assert set(base_state) <= merged_names
    for name, tensor in model.state_dict().items():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(tensor, base_state[key]), name
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # B starts at zero

    # The round-1 reference is the base: its margins start at exactly 0 and training must raise them.
    after = margins(tiny_dir, str(tmp_path / "round1"), None, examples)
    assert after.mean() > 0.5 and (after > 0).float().mean() > 0.8

    # Round 2 continues the adapter against a frozen copy of it (iterative DPO); only the policy is saved.
    train_dpo(str(tiny_dir), str(tmp_path / "round1"), examples, cfg, tmp_path / "round2", seed=1)
    assert sorted(p.name for p in (tmp_path / "round2").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    again = margins(tiny_dir, str(tmp_path / "round2"), str(tmp_path / "round1"), examples)
    assert again.mean() > 0.5


def test_a_base_reference_scores_the_continued_adapter_against_the_base(tiny_dir: Path, tmp_path: Path) -> None:
    # With an (almost) zero learning rate the policy stays at round 1's adapter. Against a frozen copy of itself
    # (dpo_reference=policy) DPO's margins are then 0; against the base (loaded through models.loading) they are
    # beta x round 1's margins over the base, which training made positive.
    examples = pair_examples(16)
    train_dpo(str(tiny_dir), None, examples, TrainConfig(learning_rate=3e-3, batch_size=8), tmp_path / "r1", seed=0)
    frozen = TrainConfig(learning_rate=1e-12, epochs=1, batch_size=8, dpo_beta=0.1, lora_dropout=0.0)
    own = train_dpo(str(tiny_dir), str(tmp_path / "r1"), examples, frozen, tmp_path / "own", seed=1)
    base_cfg = frozen.model_copy(update={"dpo_reference": "base"})
    base = train_dpo(str(tiny_dir), str(tmp_path / "r1"), examples, base_cfg, tmp_path / "base", seed=1)
    expected = 0.1 * margins(tiny_dir, str(tmp_path / "r1"), None, examples).mean().item()
    assert abs(own["margin"]) < 1e-4
    # Round 2 starts from exactly round 1's saved adapter: at this rate what it saves is what it loaded, tensor by
    # tensor. Round 1's lora_B is not zero, so a fresh adapter (lora_B = 0) would fail this check.
    start = load_file(tmp_path / "r1" / "adapter_model.safetensors")
    for path in (tmp_path / "own", tmp_path / "base"):
        saved = load_file(path / "adapter_model.safetensors")
        assert saved.keys() == start.keys()
        assert all(torch.allclose(saved[k], start[k], rtol=0.0, atol=1e-9) for k in start), path.name
    assert all(start[k].abs().max() > 1e-4 for k in start if "lora_B" in k)
    assert expected > 0.01 and base["margin"] == pytest.approx(expected, rel=0.05)
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
