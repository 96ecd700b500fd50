"""Unit tests of tasks.judging.reference_bank: balanced seeded draws, the panel and dev split, banks from
earlier rounds or a file, and the round's bank with its bootstrap."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from configs.schema import JudgeConfig
from tasks.judging.reference_bank import (
    BankError,
    assign_references,
    bank_from_rounds,
    build_bank,
    draw_panel,
    draw_references,
    file_bank,
    load_bank_file,
    numbered_bank_file,
    split_dev,
)
from tasks.records import write_records


def _bank(correct: int, wrong: int) -> list[dict]:
    return [{"prompt": f"q{i}", "response": "r", "correct": i < correct} for i in range(correct + wrong)]


def test_references_are_balanced_seeded_and_never_the_targets_prompt() -> None:
    bank = _bank(6, 6)
    picked = draw_references(bank, 4, random.Random(0))
    assert sum(bank[i]["correct"] for i in picked) == 2
    odd = draw_references(bank, 5, random.Random(1))
    assert sum(bank[i]["correct"] for i in odd) in (2, 3) and len(odd) == 5
    assert 0 not in draw_references(bank, 11, random.Random(0), exclude_prompt="q0")
    targets = [{"prompt": "q3"}, {"prompt": "x"}]
    assert assign_references(targets, bank, 4, seed=7) == assign_references(targets, bank, 4, seed=7)


def test_references_fill_a_short_label_from_the_other() -> None:
    bank = _bank(1, 6)
    picked = draw_references(bank, 4, random.Random(0))
    assert sum(bank[i]["correct"] for i in picked) == 1 and len(picked) == 4
    assert len(draw_references(_bank(1, 1), 5, random.Random(0))) == 2


def test_panel_and_dev_split() -> None:
    bank = _bank(10, 10)
    panel = draw_panel(bank, 6, seed=0)
    assert len(panel) == 6 and sum(r["correct"] for r in panel) == 3
    assert draw_panel(bank, 0, seed=0) == bank
    assert len(split_dev(bank, 100, seed=0)[1]) == 10  # at most half


def test_dev_split_partitions_the_rows_and_no_reference_judges_its_own_prompt() -> None:
    # Banks from earlier rounds hold several responses to one prompt: every prompt here appears twice, so
    # the dev rows share prompts with the references and only the row-level property can hold.
    bank = [{"prompt": f"q{i // 2}", "response": f"r{i}", "correct": i % 4 < 2, "row": i} for i in range(20)]
    references, dev = split_dev(bank, 8, seed=0)
    assert len(dev) == 8 and len(references) == 12
    assert {r["prompt"] for r in dev} & {r["prompt"] for r in references}, "the fixture does share prompts"
    # Each row is in exactly one part, each part keeps the bank's order, and the draw is seeded.
    assert sorted(r["row"] for r in references + dev) == list(range(20))
    assert [r["row"] for r in references] == sorted(r["row"] for r in references)
    assert [r["row"] for r in dev] == sorted(r["row"] for r in dev)
    assert split_dev(bank, 8, seed=0) == (references, dev) and split_dev(bank, 8, seed=1)[1] != dev
    # A dev row is scored against references drawn for it: never one answering the same prompt.
    for target, picked in zip(dev, assign_references(dev, references, 4, seed=0), strict=True):
        assert len(picked) == 4 and all(references[i]["prompt"] != target["prompt"] for i in picked)


def test_bank_from_rounds_newest_first_labelled_unique(tmp_path: Path) -> None:
    earlier = []  # the judged files of rounds 1 and 2, oldest first, as the round flow passes them
    for index, rows in ((1, [("a", "1", True), ("b", "2", False)]), (2, [("c", "3", True), ("a", "1", True)])):
        lines = [{"prompt": p, "response": r, "correct": c} for p, r, c in rows] + [{"prompt": "n", "response": "x"}]
        earlier.append(write_records(tmp_path / f"judged-{index}.jsonl", lines))
    bank = bank_from_rounds(earlier, limit=10)
    assert [r["prompt"] for r in bank] == ["c", "a", "b"]
    assert [r["prompt"] for r in bank_from_rounds(earlier, limit=2)] == ["c", "a"]
    assert bank_from_rounds(earlier[:1], limit=10) == [{"prompt": "a", "response": "1", "correct": True}] + [
        {"prompt": "b", "response": "2", "correct": False}
    ]
    assert bank_from_rounds([], limit=10) == []


def test_bank_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_text('{"prompt": "a", "response": "b", "correct": true}\n{"prompt": "a", "response": "b"}\n')
    with pytest.raises(BankError, match=r"bank.jsonl, line 2: no 'correct' field; each row needs prompt, response"):
        load_bank_file(path)
    path.write_text(
        '{"prompt": "a", "response": "b", "correct": "yes"}\n{"prompt": " ", "response": "", "correct": true}\n'
    )
    with pytest.raises(BankError, match=r"bank.jsonl, line 1: 'correct' must be true or false, got \"yes\"$"):
        load_bank_file(path)
    path.write_text(
        '{"prompt": "a", "response": "b", "correct": true}\n{"prompt": " ", "response": "", "correct": true}\n'
    )
    with pytest.raises(BankError, match=r"bank.jsonl, line 2: 'prompt' is empty$"):
        load_bank_file(path)
    cfg = JudgeConfig(kind="meta-ranking", bank="file", bank_path=str(path))
    with pytest.raises(BankError, match=rf"^judge\.bank_path={re.escape(str(path))}, line 2: 'prompt' is empty$"):
        file_bank(cfg)
    with pytest.raises(BankError, match="not found"):
        load_bank_file(tmp_path / "missing.jsonl")
    # A directory is one line naming it (and the field, from a config), not an IsADirectoryError.
    with pytest.raises(BankError, match=rf"^{re.escape(str(tmp_path))}: not a file \(a directory\); expected a JSONL"):
        load_bank_file(tmp_path)
    cfg = JudgeConfig(kind="meta-ranking", bank="file", bank_path=str(tmp_path))
    with pytest.raises(BankError, match=rf"^judge\.bank_path={re.escape(str(tmp_path))}: not a file \(a directory\)"):
        file_bank(cfg)
    # A line separator inside a string is text, not the end of a line; bytes that are not UTF-8 name their line.
    path.write_text('{"prompt": "a\u2028b", "response": "r", "correct": true}\n', encoding="utf-8")
    assert load_bank_file(path) == [{"prompt": "a\u2028b", "response": "r", "correct": True}]
    # Each row keeps its line for messages that name it; blank lines hold none.
    path.write_text(
        '\n{"prompt": "a", "response": "r", "correct": true}\n\n{"prompt": "b", "response": "s", "correct": false}\n'
    )
    assert [line for line, _ in numbered_bank_file(path)] == [2, 4]
    assert [row for _, row in numbered_bank_file(path)] == load_bank_file(path)
    path.write_bytes(b'{"prompt": "a", "response": "r", "correct": true}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(BankError, match=r"bank.jsonl, line 2: not UTF-8 text"):
        load_bank_file(path)


def test_round_bank_reads_earlier_rounds_and_bootstraps_the_shortfall(tmp_path: Path) -> None:
    labelled = [{"prompt": f"e{i}", "response": "r", "correct": i % 2 == 0} for i in range(3)]
    earlier = [write_records(tmp_path / "judged.jsonl", labelled)]  # round 1's judged file
    rows = [{"prompt": f"q{i}", "response": f" The answer is {i}", "answer": str(i % 2)} for i in range(6)]
    rows.append({"prompt": "no answer", "response": "1"})  # never bootstrapped: nothing to verify it with
    # Pointwise: the bank's filling is the same for every kind; the reference kinds also refuse one label (below).
    cfg = JudgeConfig(kind="pointwise", bootstrap=4, bank_size=5)
    bank, facts = build_bank(cfg, rows, earlier, seed=0)
    assert facts == {"bank_source": "rounds", "from_rounds": 3, "bootstrapped": 4}
    assert [r["prompt"] for r in bank[:3]] == ["e0", "e1", "e2"] and len(bank) == 5  # bank_size caps the extra
    for ref in bank[3:]:  # labelled by the verifier: q0 and q1 answer their own answer, the rest do not
        assert ref["correct"] == (ref["prompt"] in ("q0", "q1"))
    assert build_bank(cfg, rows, earlier, seed=0) == (bank, facts)  # seeded
    enough = JudgeConfig(kind="pointwise", bootstrap=3, bank_size=5)
    assert build_bank(enough, rows, earlier, seed=0)[1]["bootstrapped"] == 0
    alone, facts = build_bank(cfg, rows, [], seed=0)  # round 1: only its own rows
    assert facts["from_rounds"] == 0 and facts["bootstrapped"] == 4 and len(alone) == 4
    assert all(row["prompt"] != "no answer" for row in alone)
    with pytest.raises(BankError, match=r"^judge\.bank=rounds \(0 rows from .*: every row is wrong \(4 of 4\)"):
        build_bank(cfg.model_copy(update={"kind": "meta-ranking", "references": 3}), rows, [], seed=0)


def test_round_bank_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    rows = [{"prompt": f"p{i}", "response": "r", "correct": i % 2 == 0} for i in range(4)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = JudgeConfig(kind="meta-ranking", bank="file", bank_path=str(path), bank_size=3, references=3, panel=3)
    bank, facts = build_bank(cfg, [], [], seed=0)
    assert [r["prompt"] for r in bank] == ["p0", "p1", "p2"]
    assert facts == {"bank_source": "file", "bank_path": str(path), "from_file": 3}
    # A file bank Meta Ranking cannot use is refused in one line naming the file: too few rows, one label.
    with pytest.raises(BankError, match=rf"^{re.escape(str(path))}: holds 3 labelled rows, fewer than judge\.refer"):
        build_bank(cfg.model_copy(update={"references": 5, "panel": 5}), [], [], seed=0)
    path.write_text("".join(json.dumps({**row, "correct": False}) + "\n" for row in rows))
    with pytest.raises(BankError, match=rf"^{re.escape(str(path))}: field 'correct': every row is wrong"):
        build_bank(cfg, [], [], seed=0)
