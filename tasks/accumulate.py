"""ReST-EM's training set: the verified rows selected in this and every earlier round of the campaign, merged.

With `train.init: base` every round trains a fresh LoRA on the base model (ReST-EM, Singh et al. 2023; STaR,
Zelikman et al. 2022, also restarts from the base each iteration) on everything the campaign has verified so far,
so a round's adapter never inherits an earlier round's drift, only its data. Rows are deduplicated by (prompt,
response), and each prompt keeps at most a cap of rows, newest rounds first (the latest policy's samples are
the best the campaign has).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task

from configs.schema import CampaignConfig
from tasks.layout import RESUMABLE
from tasks.records import DatasetRef, Record, read_records, write_lineage, write_records
from tasks.tracking import RoundContext


def accumulate(rounds: Sequence[Sequence[Record]], max_per_prompt: int) -> list[Record]:
    """Merge the rows selected by several rounds into one training set.

    Args:
        rounds: Each round's selected rows, oldest round first.
        max_per_prompt: At most this many rows per prompt.

    Returns:
        The newest round's rows first (then older rounds'), each (prompt, response) once, at most
        `max_per_prompt` rows per prompt; every row gains `from_round` (1 = the oldest given).
    """
    kept: list[Record] = []
    seen: set[tuple[str, str]] = set()
    per_prompt: dict[str, int] = {}
    for index in range(len(rounds), 0, -1):
        for row in rounds[index - 1]:
            key = (row["prompt"], row["response"])
            if key in seen or per_prompt.get(row["prompt"], 0) >= max_per_prompt:
                continue
            seen.add(key)
            per_prompt[row["prompt"]] = per_prompt.get(row["prompt"], 0) + 1
            kept.append({**row, "from_round": index})
    return kept


@task(name="accumulate", **RESUMABLE)
def accumulate_task(
    config: CampaignConfig, earlier: tuple[DatasetRef, ...], selected: DatasetRef, out_path: str, ctx: RoundContext
) -> DatasetRef:
    """Merge the earlier rounds' selected rows with this round's, write `accumulated.jsonl` (its lineage lists the
    refs it came from), log `train/accumulated_*` metrics and the data."""
    sources = (*earlier, selected)
    cap = config.train.max_per_prompt_accumulated or config.select.max_per_prompt
    rows = accumulate([read_records(ref) for ref in sources], cap)
    ref = write_records(out_path, rows)
    write_lineage(Path(out_path), sources=list(sources), max_per_prompt=cap)
    ctx.log_metrics(
        {
            "train/accumulated_rows": float(len(rows)),
            "train/accumulated_prompts": float(len({row["prompt"] for row in rows})),
            "train/accumulated_from_earlier": float(sum(1 for row in rows if row["from_round"] < len(sources))),
        }
    )
    ctx.log_dataset(ref, name=f"round-{ctx.round}-accumulated", context="training")
    return ref
