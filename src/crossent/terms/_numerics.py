"""Numerical helpers shared by the term families (one home for each stable rewrite)."""

from __future__ import annotations

import torch
from torch import Tensor

# Below this log-probability e^s is exactly 0 in float32 and float64, so replacing s by
# max(s, S_FLOOR) changes no product e^s * h(s) and keeps 0 * inf (s = -inf) out of it.
S_FLOOR = -1.0e4


def no_graph(*tensors: Tensor) -> bool:
    """Whether no autograd graph is being recorded through ``tensors`` (in-place is safe)."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def prob_minus_target(s: Tensor, p: Tensor) -> Tensor:
    """``e^s - P`` without cancellation where ``P`` is near 1 (``e^s - 1 = expm1(s)``)."""
    return torch.where(p > 0.5, torch.expm1(s) + (1 - p), torch.exp(s) - p)


def power(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` as a new tensor; a fourth power as two squarings.

    PyTorch's ``pow`` has fast paths for 2 and 3 but not for 4, the asymmetric loss's default,
    where it costs twice the two multiplications.
    """
    if exponent == 4:
        squared = x * x
        return squared.mul_(squared)
    return x.pow(exponent)
