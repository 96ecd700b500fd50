"""How many read-only policies each process keeps loaded (`models.loading.PolicyCache`), from the environment.

A module of its own, with nothing heavy imported, so that `flows.preflight` checks the variable before a run
without loading torch.
"""

from __future__ import annotations

import os

CACHE_SIZE_ENV = "SELFTRAIN_POLICY_CACHE"  # read-only policies kept loaded per process (0: no cache)
DEFAULT_CACHE_SIZE = 2  # the policy a round samples from and the candidate it evaluates


def cache_size() -> int:
    """The read-only policies `SELFTRAIN_POLICY_CACHE` asks this process to keep loaded (`DEFAULT_CACHE_SIZE` when
    it is unset or empty).

    Raises:
        ValueError: a value that is not a whole number of 0 or more, in one line naming the variable and what it
            takes.
    """
    raw = os.environ.get(CACHE_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_SIZE
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(
            f"{CACHE_SIZE_ENV}={raw}: not a whole number of 0 or more (the read-only policies each process keeps "
            f"loaded: 0 turns the cache off; unset, {DEFAULT_CACHE_SIZE})"
        )
    return int(raw)
