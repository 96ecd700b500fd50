"""Greedy next tokens through a bfloat16 screen of the LM head, rescored in float32: the float32 argmax, cheaper.

A greedy decoding step needs one token per row: the argmax of the head's float32 logits. With Gemma's
262,144-token vocabulary the head is about half of a decoding step on a CPU (a (128, 640) x (640, 262,144)
product takes 0.40 s in float32 here). On CPUs with AVX512-BF16 the same product in bfloat16 takes 0.13 s,
but its logits are off by up to about 0.1, enough to swap near-tied tokens, so the bfloat16 logits only
screen: each row's 32 best screened tokens are rescored exactly in float32 and the argmax is taken among them.
When the 32nd screened logit is more than twice a proven error bound below the largest (`screen_bound`), no
token outside the 32 can be the float32 argmax; a row where that fails takes the whole float32 head. So the
answer is the float32 argmax; only the summation order of the rescoring differs from the full product's (a
few float32 ulps, which could only matter for two tokens tied to about 1e-7 of their size).

Sampling (temperature > 0) needs the whole distribution and keeps the float32 head (`models.sampling`).
"""

from __future__ import annotations

import torch

from models.loading import cpu_has_bfloat16

BF16_UNIT = 2.0**-8  # bfloat16's unit roundoff: 8 significant bits, round to nearest
FP32_UNIT = 2.0**-24
CANDIDATES = 32  # screened tokens rescored a row; rows with more near the top take the whole float32 head
WINDOW = 2 * (1 + 1 / 64)  # screen bounds kept below the top (`ScreenedGreedyHead.__call__`)


def screen_bound(hidden_norm: torch.Tensor, weight_norm: float, screen_max: torch.Tensor, dim: int) -> torch.Tensor:
    """Per row, a bound on |bfloat16-screened logit - float32 logit| for every token.

    With h, w rounded to bfloat16 (each entry within `BF16_UNIT` of itself, relatively), products summed in
    float32 (oneDNN's and PyTorch's bfloat16 matmuls accumulate in float32) and the sum rounded to bfloat16:
    |b - h.w| <= (2u + u^2 + 2 n v) sum|h_i w_i| + u |b| / (1 - u), with u, v the units, n = `dim` (the
    2 n v also covers the float32 logit's own summation error), and sum|h_i w_i| <= |h| |w| (Cauchy-Schwarz).
    |b| is at most the row's largest screened logit in size for the tokens that matter (those near the top),
    so `screen_max`'s size stands in for it.

    Args:
        hidden_norm: (rows,) Euclidean norms of the hidden states.
        weight_norm: The largest Euclidean norm of a head row.
        screen_max: (rows,) the largest screened logit of each row.
        dim: The hidden size.
    """
    u = BF16_UNIT
    products = (2 * u + u * u + 2 * dim * FP32_UNIT) * hidden_norm * weight_norm
    return products + u / (1 - u) * screen_max.abs()


class ScreenedGreedyHead:
    """The argmax of a bias-free linear head's float32 logits, through a bfloat16 screen (module docstring).

    Holds a bfloat16 copy of the head's weight (2 bytes a parameter: 335 MB for Gemma's tied embedding).
    The head must stay frozen while this lives: a changed weight would leave the copy stale.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        """Copy `weight` ((vocab, dim) float32) to bfloat16 and note its largest row norm."""
        if weight.dtype != torch.float32:
            raise ValueError(f"the screened head rescores in float32; the head's weight is {weight.dtype}")
        self.weight = weight.detach()
        self.screen = self.weight.to(torch.bfloat16)
        self.weight_norm = float(self.weight.norm(dim=1).max())

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """(rows,) token ids: for each row of `hidden` ((rows, dim) float32) the first token of largest logit."""
        screened = hidden.to(torch.bfloat16) @ self.screen.T
        values, tokens = screened.topk(min(CANDIDATES, screened.shape[-1]), dim=-1)
        top = values[:, 0].float()
        # The true argmax t has h.w_t >= h.w_m >= top - bound (m: the screen's argmax), so its screened logit
        # is at least top - 2 bound (a little lower when it is far from top in size: the 1/64 covers it).
        floor = top - WINDOW * screen_bound(hidden.norm(dim=-1), self.weight_norm, top, hidden.shape[-1])
        # A row whose last candidate is below the floor has t among its candidates; rescore those in float32.
        exact = torch.einsum("rd,rkd->rk", hidden, self.weight[tokens])
        best = exact.max(dim=-1, keepdim=True).values
        # Ties go to the lowest token id, as argmax does.
        chosen = torch.where(exact == best, tokens, self.screen.shape[0]).min(dim=-1).values
        unsure = (values[:, -1].float() >= floor).nonzero(as_tuple=True)[0]
        if len(unsure):  # a flat row: more tokens near the top than candidates; the whole head decides
            chosen[unsure] = (hidden[unsure] @ self.weight.T).argmax(dim=-1)
        return chosen


def screened_head_for(head: torch.nn.Module, cap: float | None) -> ScreenedGreedyHead | None:
    """A `ScreenedGreedyHead` for `head` where it pays and is exact, else None (decode with the model's head).

    It pays only where the CPU multiplies bfloat16 natively (`cpu_has_bfloat16`; elsewhere bfloat16 is
    emulated and slower than float32), and applies to a bias-free float32 `nn.Linear` head whose logits the
    model does not cap (`final_logit_softcapping`: tanh is monotonic, but rounding near its saturation can tie
    logits that the head's products tell apart, and argmax then takes the lower id).
    """
    if cap or not cpu_has_bfloat16():
        return None
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.dtype != torch.float32:
        return None
    return ScreenedGreedyHead(head.weight)
