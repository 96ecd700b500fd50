"""The screened greedy head: its error bound holds, and its token is the float32 argmax, near-ties and flat rows too."""

from __future__ import annotations

import pytest
import torch

from models.greedy_head import CANDIDATES, ScreenedGreedyHead, screen_bound, screened_head_for


def _head(vocab: int = 4096, dim: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(vocab, dim, generator=torch.Generator().manual_seed(seed)) / dim**0.5


def test_bound_covers_the_bfloat16_error() -> None:
    # Large hidden states (Gemma's final ones have norms near 120) and some outlier dimensions.
    weight = _head()
    hidden = torch.randn(32, 64, generator=torch.Generator().manual_seed(1)) * 15
    hidden[:, 3] *= 20
    exact = hidden @ weight.T
    screened = (hidden.bfloat16() @ weight.bfloat16().T).float()
    top = screened.max(dim=-1).values
    bound = screen_bound(hidden.norm(dim=-1), float(weight.norm(dim=1).max()), top, 64)
    near = screened >= (top - 10 * bound).unsqueeze(1)  # the bound is stated for tokens near the top
    error = (screened - exact).abs()
    assert (error[near] <= bound.unsqueeze(1).expand_as(error)[near]).all()
    assert error.max() > 0  # bfloat16 really is off


def test_random_rows_give_the_float32_argmax() -> None:
    weight = _head()
    hidden = torch.randn(64, 64, generator=torch.Generator().manual_seed(2)) * 8
    assert torch.equal(ScreenedGreedyHead(weight)(hidden), (hidden @ weight.T).argmax(dim=-1))


def test_near_ties_below_bfloat16_resolution_go_to_the_float32_winner() -> None:
    weight = _head()
    hidden = torch.randn(8, 64, generator=torch.Generator().manual_seed(3)) * 8
    winner = (hidden @ weight.T).argmax(dim=-1)
    # For each row, a twin of its winner nudged up by about 1e-5 of a logit: bfloat16 cannot tell them apart.
    twins = torch.arange(4000, 4008)
    weight[twins] = weight[winner] + 2e-5 * hidden / hidden.norm(dim=-1, keepdim=True) ** 2
    logits = hidden @ weight.T
    assert torch.equal(logits.argmax(dim=-1), twins)
    assert torch.equal(
        (hidden.bfloat16() @ weight.bfloat16().T)[torch.arange(8), twins].float(),
        (hidden.bfloat16() @ weight.bfloat16().T)[torch.arange(8), winner].float(),
    )
    assert torch.equal(ScreenedGreedyHead(weight)(hidden), twins)


def test_exact_ties_go_to_the_lowest_token_id() -> None:
    weight = _head()
    weight[100] = weight[7] * 50  # the winner everywhere its hidden state points
    weight[2000] = weight[100]
    hidden = weight[100:101].repeat(3, 1)
    assert torch.equal(ScreenedGreedyHead(weight)(hidden), torch.tensor([100, 100, 100]))


def test_a_flat_row_falls_back_to_the_whole_head() -> None:
    # More tokens within the bound of the top than there are candidates: the float32 head decides the row.
    weight = _head()
    hidden = torch.randn(2, 64, generator=torch.Generator().manual_seed(4)) * 8
    direction = hidden[0] / hidden[0].norm()
    flat = torch.arange(10, 10 + 3 * CANDIDATES)
    weight[flat] = direction * 2 + 1e-4 * torch.randn(len(flat), 64, generator=torch.Generator().manual_seed(5))
    head = ScreenedGreedyHead(weight)
    values = (hidden.bfloat16() @ head.screen.T).topk(CANDIDATES).values
    assert values[0, -1] >= values[0, 0] - 0.5  # row 0 really is flat at the top
    assert torch.equal(head(hidden), (hidden @ weight.T).argmax(dim=-1))


def test_built_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.greedy_head.cpu_has_bfloat16", lambda: True)
    assert isinstance(screened_head_for(torch.nn.Linear(8, 32, bias=False), None), ScreenedGreedyHead)
    assert screened_head_for(torch.nn.Linear(8, 32, bias=False), 30.0) is None  # a logit cap
    assert screened_head_for(torch.nn.Linear(8, 32), None) is None  # a bias
    assert screened_head_for(torch.nn.Linear(8, 32, bias=False).bfloat16(), None) is None
    assert screened_head_for(torch.nn.Embedding(32, 8), None) is None
    monkeypatch.setattr("models.greedy_head.cpu_has_bfloat16", lambda: False)  # bfloat16 would be emulated
    assert screened_head_for(torch.nn.Linear(8, 32, bias=False), None) is None
    with pytest.raises(ValueError, match="float32"):
        ScreenedGreedyHead(torch.zeros(4, 2, dtype=torch.bfloat16))
