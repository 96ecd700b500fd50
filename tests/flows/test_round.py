"""What the campaign carries from one round to the next (`flows.round.RoundInputs.after`), without Prefect."""

from __future__ import annotations

from pathlib import Path

from flows.round import RoundInputs, RoundResult
from tasks.evaluate import Evaluation
from tasks.records import DatasetRef, ModelRef

BASE = ModelRef(source="tiny", base="/m")


def _evaluation(name: str, accuracy: float) -> Evaluation:
    ref = DatasetRef(path=f"/w/{name}/evaluated.jsonl", sha256=name, rows=100)
    return Evaluation(split="validation", ref=ref, metrics={"accuracy": accuracy})


def _result(index: int, accuracy: float | None, promoted: bool, best_after: float) -> RoundResult:
    trained = accuracy is not None
    return RoundResult(
        round=index,
        run_id=f"run{index}",
        candidate=ModelRef(source="tiny", base="/m", adapter=f"/w/round-0{index}/adapter") if trained else None,
        evaluation=_evaluation(f"round-0{index}", accuracy) if accuracy is not None else None,
        judged=DatasetRef(path=f"/w/round-0{index}/judged.jsonl", sha256=f"j{index}", rows=8),
        promoted=promoted,
        reason="promoted: ..." if promoted else "refused: ...",
        best_after=best_after,
    )


def test_the_champion_is_the_best_promoted_policy_not_the_last() -> None:
    start = RoundInputs(
        policy=BASE, policy_source=None, champion=_evaluation("round-00", 0.5), champion_round=0, best_accuracy=0.5
    )
    first = start.after(_result(1, 0.6, promoted=True, best_after=0.6))  # a new best: policy and champion
    assert first.policy.adapter == "/w/round-01/adapter" and first.policy_source == "runs:/run1/adapter"
    assert (first.champion_round, first.best_accuracy) == (1, 0.6)
    second = first.after(_result(2, 0.59, promoted=True, best_after=0.6))  # within the margin, below the best
    assert second.policy.adapter == "/w/round-02/adapter"  # the next round trains from it ...
    assert second.champion_round == 1 and second.champion.accuracy == 0.6  # ... the gate still compares with 0.6
    assert second.best_accuracy == 0.6
    third = second.after(_result(3, 0.4, promoted=False, best_after=0.6))  # refused: nothing moves
    assert third.policy == second.policy and third.champion == second.champion
    skipped = third.after(_result(4, None, promoted=False, best_after=0.6))  # training skipped
    assert skipped.policy == second.policy
    tie = skipped.after(_result(5, 0.6, promoted=True, best_after=0.6))  # a tie goes to the newer, as the alias
    assert tie.champion_round == 5
    assert [ref.path for ref in tie.earlier] == [f"/w/round-0{i}/judged.jsonl" for i in range(1, 6)]  # oldest first


def test_a_finished_rounds_lost_or_changed_file_is_named(tmp_path: Path) -> None:
    from flows.campaign import CampaignFilesError, changed_files
    from flows.interrupt import StopError
    from tasks.records import sha256_dir, sha256_file

    judged, evaluated, adapter = tmp_path / "judged.jsonl", tmp_path / "evaluated.jsonl", tmp_path / "adapter"
    judged.write_text('{"id": "a"}\n')
    evaluated.write_text('{"id": "a", "score": 1.0}\n')
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")

    def ref(path: Path) -> DatasetRef:
        return DatasetRef(path=str(path), sha256=sha256_file(path), rows=1)

    result = RoundResult(
        round=2,
        run_id="r2",
        candidate=ModelRef(source="tiny", base="b", adapter=str(adapter), sha256=sha256_dir(adapter)),
        evaluation=Evaluation(split="validation", ref=ref(evaluated), metrics={"accuracy": 1.0}),
        judged=ref(judged),
        promoted=True,
        reason="promoted",
        best_after=1.0,
    )
    assert changed_files(result) is None
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    assert (
        changed_files(result)
        == f"its adapter {adapter} changed since the round wrote it (a file in it is missing or different)"
    )
    evaluated.write_text('{"id": "a", "score": 0.0}\n')
    assert changed_files(result) == f"{evaluated} changed since the round wrote it"
    judged.unlink()
    assert changed_files(result) == f"{judged} is missing"
    assert issubclass(CampaignFilesError, StopError)  # `launch` prints it in one line, exit status 2


def test_failure_line() -> None:
    from flows.interrupt import failure_line

    assert failure_line(ValueError("bad row\nmore")) == "ValueError: bad row"
    assert failure_line(RuntimeError()) == "RuntimeError"
