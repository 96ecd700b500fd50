"""Timing a benchmark's arms against each other within one run, as the ratios in benchmarks/README.md are taken."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def interleaved_cpu_medians(arms: Mapping[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each arm's median CPU seconds (this process, all its threads) over `repeats` rounds.

    Every round runs the arms once each, in turn, so a busy spell of the shared machine falls on all of them; one
    warm-up round first (allocations, lazy initialisation) is not counted. Prints each round's times.
    """
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for repeat in range(repeats + 1):
        for name, run in arms.items():
            started = time.process_time()
            run()
            if repeat:
                seconds[name].append(time.process_time() - started)
        print(f"repeat {repeat}/{repeats}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in seconds.items() if v))
    return {name: statistics.median(values) for name, values in seconds.items()}
