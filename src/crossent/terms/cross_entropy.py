r"""Cross-entropy and the focal losses: ``F = -P s`` and ``F = -P (1 - e^s)^g s``.

The terms of :func:`crossent.cross_entropy` and :func:`crossent.focal_loss` (the contract of a
term is :mod:`crossent.core.term`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term
from crossent.terms._numerics import S_FLOOR, no_graph

# log(0.2): the FLSD-53 schedule switches gamma where p < 0.2 (Mukhoti et al. 2020).
_LOG_FLSD_THRESHOLD = math.log(0.2)


class CrossEntropyTerm(Term):
    """Cross-entropy: ``F(s, P) = -P s``, ``G(s, P) = -P``.

    Example:
        >>> t = CrossEntropyTerm()
        >>> t.value(torch.tensor([-0.5]), torch.tensor([1.0]))
        tensor([0.5000])
    """

    name: ClassVar[str] = "cross_entropy"
    kernel: ClassVar[KernelCode | None] = KernelCode.CE
    linear_in_target: ClassVar[bool] = True
    affine_slope: ClassVar[float | None] = -1.0

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P s`` (the engine zeroes it where ``P = 0``, also for a masked ``s = -inf``)."""
        return -p * s

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P``, broadcast to the shape of ``s``."""
        return torch.broadcast_to(-p, torch.broadcast_shapes(s.shape, p.shape)).to(s.dtype)


class FocalTerm(Term):
    r"""Focal loss (Lin et al. 2017): ``F = -P (1 - e^s)^g s``.

    .. math::

        F(s, P) = -P (1 - e^{s})^{\gamma} s, \qquad
        G(s, P) = -P (1 - q)^{\gamma} \left[1 - \gamma\, q\, r(s)\right],

    with ``q = e^s`` and ``r(s) = s / (1 - q)``, ``r(0) = -1``. The textbook form
    ``g q (1-q)^(g-1) s`` is ``0 * inf`` for ``g < 1`` at a saturated class (``s = 0`` in
    float32); this one is finite there, and at ``s = -inf``. ``1 - q`` is ``-expm1(s)``.
    ``gamma = 0`` is cross-entropy.

    Reference: Lin et al., `Focal Loss for Dense Object Detection
    <https://arxiv.org/abs/1708.02002>`_, 2017.

    Example:
        >>> t = FocalTerm(2.0)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.1733
    """

    name: ClassVar[str] = "focal"
    kernel: ClassVar[KernelCode | None] = KernelCode.FOCAL
    linear_in_target: ClassVar[bool] = True

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)

    def _gamma(self, s: Tensor) -> Tensor | float:
        """The exponent at each element (a constant here)."""
        return self.gamma

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1 - e^s)^g s`` with ``1 - e^s = -expm1(s)``."""
        g = self._gamma(s)
        if no_graph(s, p):  # the same, in place on a fresh tensor (the engine's forward pass)
            return torch.expm1(s).neg_().pow_(g).mul_(s).mul_(-p)
        return -p * (-torch.expm1(s)).pow(g) * s

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1-q)^g [1 - g q r(s)]`` with ``r(s) = s / (1 - q)``, ``r(0) = -1``.

        At ``s = 0`` exactly (a saturated class, ``1 - q = 0``) the value of ``r`` does not
        matter: ``(1 - q)^g = 0`` for ``g > 0`` and ``g q r = 0`` for ``g = 0``; dividing by
        ``max(1 - q, tiny)`` keeps it finite there with one operation instead of a branch.
        """
        g = self._gamma(s)
        s = s.clamp(min=S_FLOOR)  # e^s = 0 below: keeps e^s * s finite at s = -inf
        if no_graph(s, p):  # the same, in place on fresh tensors (the engine's forward pass)
            one_minus_q, bracket = _focal_pieces(s, g)
            return one_minus_q.pow_(g).mul_(bracket).mul_(-p)
        one_minus_q = -torch.expm1(s)
        bracket = 1 - g * torch.exp(s) * s / one_minus_q.clamp(min=torch.finfo(s.dtype).tiny)
        return -p * one_minus_q.pow(g) * bracket

    def value_and_grad(self, s: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``F`` and ``G`` sharing ``1 - q`` and ``(1 - q)^g`` (one ``expm1``, one ``pow``)."""
        if not no_graph(s, p):
            return self.value(s, p), self.grad(s, p)
        if self.gamma == 0 and type(self)._gamma is FocalTerm._gamma:  # cross-entropy
            return torch.mul(s, p).neg_(), torch.neg(p).expand_as(s).contiguous()
        g = self._gamma(s)
        # (1 - q) is 1 below the floor as it is at s = -inf, so F keeps the unclamped s
        one_minus_q, bracket = _focal_pieces(s.clamp(min=S_FLOOR), g)
        power = one_minus_q.pow_(g)
        value = torch.mul(power, s).mul_(-p)
        return value, power.mul_(bracket).mul_(-p)

    def kernel_params(self) -> tuple[float, ...]:
        """``(gamma,)``."""
        return (self.gamma,)

    def kernel_scalars(self) -> tuple[float, float, float]:
        """``(log p where gamma switches, gamma below, gamma at or above)``: never switches."""
        return (-math.inf, self.gamma, self.gamma)


def _focal_pieces(s: Tensor, g: Tensor | float) -> tuple[Tensor, Tensor]:
    """``1 - e^s`` and ``1 - g q r(s) = 1 - g e^s s / (1 - e^s)`` as fresh tensors.

    ``s`` is already clamped at :data:`S_FLOOR`; ``1 - e^s`` is ``-expm1(s)``, and the
    division uses ``max(1 - e^s, tiny)`` (see :meth:`FocalTerm.grad`).
    """
    one_minus_q = torch.expm1(s).neg_()
    tiny = torch.finfo(s.dtype).tiny
    bracket = torch.exp(s).mul_(s).div_(one_minus_q.clamp(min=tiny)).mul_(-g).add_(1)
    return one_minus_q, bracket


class FLSD53FocalTerm(FocalTerm):
    r"""Focal loss with the sample-dependent schedule FLSD-53 (Mukhoti et al. 2020).

    ``gamma = 5`` where the class's own probability ``e^s < 0.2``, else ``gamma = 3``, then
    :class:`FocalTerm`'s ``F`` and ``G`` with that exponent (for one-hot targets this is the
    schedule on ``p_t``). The exponent is piecewise constant in ``s``, so ``G`` has no term
    from it, as in the authors' code (which treats gamma as a constant per sample).

    Reference: Mukhoti et al., `Calibrating Deep Neural Networks using Focal Loss
    <https://arxiv.org/abs/2002.09437>`_, 2020.

    Example:
        >>> t = FLSD53FocalTerm()
        >>> round(t.value(torch.log(torch.tensor([0.1])), torch.tensor([1.0])).item(), 4)
        1.3597
    """

    name: ClassVar[str] = "focal_flsd53"

    def __init__(self) -> None:
        super().__init__(3.0)

    def _gamma(self, s: Tensor) -> Tensor:
        """5 where ``e^s < 0.2``, else 3."""
        five, three = torch.full_like(s, 5.0), torch.full_like(s, 3.0)
        return torch.where(s < _LOG_FLSD_THRESHOLD, five, three)

    def kernel_params(self) -> tuple[float, ...]:
        """``(threshold, gamma below it, gamma at or above it) = (0.2, 5, 3)``."""
        return (0.2, 5.0, 3.0)

    def kernel_scalars(self) -> tuple[float, float, float]:
        """``(log 0.2, 5, 3)``: the switch point in log-probability, then the two gammas."""
        return (_LOG_FLSD_THRESHOLD, 5.0, 3.0)
