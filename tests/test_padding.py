"""benchmarks/padding.py: the share of real tokens in batches padded to their longest row."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.padding import real_share  # noqa: E402


def test_equal_lengths_carry_no_padding_and_a_long_row_pads_its_batch() -> None:
    assert real_share([5] * 16, 8, seed=0) == 1.0
    # one batch of 4 rows padded to 10: 13 real tokens of 40 computed
    assert real_share([1, 1, 1, 10], 4, seed=3) == pytest.approx(13 / 40)
    # a short last batch pads only its own rows
    assert real_share([2, 2, 2], 2, seed=1) == 1.0


def test_the_share_depends_on_how_rows_meet_in_batches() -> None:
    lengths = [1, 1, 9, 9]
    shares = {real_share(lengths, 2, seed=s) for s in range(20)}
    assert shares == {1.0, 20 / 36}  # sorted pairs waste nothing, mixed pairs pad both
