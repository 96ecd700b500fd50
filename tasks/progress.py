"""Progress lines for long steps: counts and rates, at most one line every few seconds.

Inside a Prefect run the line goes to the run logger, so it shows in the terminal and in the Prefect
UI; outside one (tests, notebooks) it is printed.
"""

from __future__ import annotations

import time


def emit(line: str) -> None:
    """Send one progress line to the Prefect run log when there is one, else to stdout."""
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
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        emit(f"{self.label}: {done}/{total} {self.unit}, {rate:.1f} {self.unit}/s")

    def line(self, text: str) -> None:
        """Report a free-form line under this label."""
        emit(f"{self.label}: {text}")
