r"""Weighted sums of terms: ``F = sum_i c_i F_i`` (symmetric cross-entropy, mixed KL)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term

# Weighted sums of two parts with a block of their own in the kernel template.
_PAIRS: dict[tuple[KernelCode | None, ...], KernelCode] = {
    (KernelCode.CE, KernelCode.RCE): KernelCode.SYMMETRIC_CE,
    (KernelCode.FORWARD_KL, KernelCode.REVERSE_KL): KernelCode.MIXED_KL,
}


class WeightedSumTerm(Term):
    r"""A weighted sum of terms, ``F = sum_i c_i F_i``, ``G = sum_i c_i G_i``, in one pass.

    Used for the symmetric cross-entropy (``alpha CE + beta RCE``) and the mixed KL
    divergence. The sum is treated as acting on every class
    (``vanishes_where_target_zero = False``); the ``F_i`` and ``G_i`` of parts that vanish
    where ``P = 0`` are zeroed there, as the engine would do for them alone.

    Example:
        >>> from crossent.terms import CrossEntropyTerm, UnhingedTerm
        >>> t = WeightedSumTerm([(0.5, CrossEntropyTerm()), (0.5, UnhingedTerm())])
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.5966
    """

    name: ClassVar[str] = "weighted_sum"
    kernel: ClassVar[KernelCode | None] = None
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, parts: list[tuple[float, Term]]) -> None:
        self.parts = [(float(c), term) for c, term in parts]

    @staticmethod
    def _part(term: Term, v: Tensor, p: Tensor) -> Tensor:
        """A part's ``F`` or ``G``, zeroed where ``P = 0`` if the part vanishes there."""
        if term.vanishes_where_target_zero:
            return torch.where(p == 0, torch.zeros_like(v), v)
        return v

    @staticmethod
    def _sum(values: list[Tensor]) -> Tensor:
        """The sum of the parts' tensors."""
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``sum_i c_i F_i(s, P)``."""
        return self._sum([c * self._part(t, t.value(s, p), p) for c, t in self.parts])

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``sum_i c_i G_i(s, P)``."""
        return self._sum([c * self._part(t, t.grad(s, p), p) for c, t in self.parts])

    def takes_log_of_target(self) -> bool:
        """Whether any part reads ``log P``."""
        return any(t.takes_log_of_target() for _, t in self.parts)

    def kernel_params(self) -> tuple[float, ...]:
        """``(c_1, *params_1, c_2, *params_2, ...)``."""
        return tuple(x for c, t in self.parts for x in (c, *t.kernel_params()))

    def kernel_code(self) -> KernelCode | None:
        """The template's block for this pair of parts (symmetric CE, mixed KL), else ``None``.

        Any other weighted sum runs on the PyTorch engine.
        """
        return _PAIRS.get(tuple(term.kernel_code() for _, term in self.parts))

    def kernel_scalars(self) -> tuple[float, float, float]:
        """``(c_1, c_2, the parts' first hyper-parameter)`` (symmetric CE's ``A``)."""
        (c1, first), (c2, second) = self.parts
        params = (*first.kernel_params(), *second.kernel_params())
        return c1, c2, float(params[0]) if params else 0.0
