"""Progress lines for long steps: counts and rates, at most one line every few seconds.

Inside a Prefect run the line goes to the run logger, so it shows in the terminal and in the Prefect
UI; outside one (tests, notebooks) it is printed. Inside a run, counted progress also moves a Prefect progress
artifact per stage (`tasks.prefect_artifacts.StageProgress`, throttled): `Progress` callbacks (generate,
evaluate) and the trainers' `<stage>: step N/M` lines.
"""

from __future__ import annotations

import re
import time

STEP_LINE = re.compile(r"^([\w()-]+): step (\d+)/(\d+)\b")  # what every trainer's progress line starts with


def track(stage: str, done: int, total: int) -> None:
    """Move the stage's Prefect progress artifact to `done`/`total` (throttled; nothing outside a run)."""
    from tasks.prefect_artifacts import stage_progress  # imported late: tracking_store imports this module

    stage_progress(stage).update(done, total)


def emit(line: str) -> None:
    """Send one progress line to the Prefect run log when there is one, else to stdout; a trainer's
    `<stage>: step N/M` line also moves the stage's progress artifact."""
    step = STEP_LINE.match(line)
    if step:
        track(step.group(1), int(step.group(2)), int(step.group(3)))
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        get_run_logger().info(line)
    except (ImportError, MissingContextError):
        print(line, flush=True)


class Progress:
    """A `(done, total)` callback that reports `label: done/total unit, rate unit/s` now and then."""

    def __init__(self, label: str, unit: str, every_seconds: float = 5.0) -> None:
        self.label, self.unit, self.every = label, unit, every_seconds
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        track(self.label, done, total)
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        emit(f"{self.label}: {done}/{total} {self.unit}, {rate:.1f} {self.unit}/s")

    def line(self, text: str) -> None:
        """Report a free-form line under this label."""
        emit(f"{self.label}: {text}")
