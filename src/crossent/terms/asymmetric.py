r"""The negative half of the asymmetric loss (ASL): a focal term of a shifted probability.

The asymmetric loss of Ridnik et al. (2021) treats a multi-label element's two outcomes
differently: the positive outcome gets the focal term ``-(1 - p)^{g+} log p``
(:class:`crossent.terms.FocalTerm`), the negative outcome the focal term of a probability
shifted by a margin ``m`` ("probability shifting", which discards easy negatives):

.. math::

    p_m = \max(p - m, 0), \qquad \ell_- = -p_m^{\gamma_-} \log(1 - p_m).

Written on the log-probability ``s = log(1 - p)`` of the negative outcome, with
``r = 1 - p_m = min(e^s + m, 1)``, this is a per-class term of the binary engine:

.. math::

    F(s, P) = -P (1 - r)^{\gamma} \log r, \qquad
    G(s, P) = -P\, e^{s} (1 - r)^{\gamma}
        \left[\frac{1}{r} - \gamma \frac{\log r}{1 - r}\right]
        \ (e^s + m < 1), \quad 0\ \text{where the clip binds},

``dr/ds = e^s`` below the clip and 0 where it binds. ``log r / (1 - r) -> -1`` as ``r -> 1``,
so ``G`` stays finite for ``gamma < 1`` where the textbook ``(1 - r)^{gamma - 1} log r`` is
``0 * inf``. ``m = 0`` is :class:`crossent.terms.FocalTerm` exactly.

Reference: Ridnik et al., `Asymmetric Loss For Multi-Label Classification
<https://arxiv.org/abs/2009.14119>`_, ICCV 2021.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term
from crossent.terms._numerics import S_FLOOR, no_graph, power
from crossent.terms.cross_entropy import FocalTerm


class ShiftedFocalTerm(Term):
    r"""Focal term of the probability shifted up by ``shift`` (ASL's negative half).

    ``F(s, P) = -P (1 - r)^gamma log r`` with ``r = min(e^s + shift, 1)`` (see the module
    docstring for ``G``); ``shift = 0`` is :class:`crossent.terms.FocalTerm`, to which it
    then hands every evaluation. The binary engine runs it on the negative outcome; it has
    no block in the GPU kernel template (binary losses run on the PyTorch engine).

    Example:
        >>> t = ShiftedFocalTerm(4.0, 0.05)
        >>> s = torch.log(torch.tensor([0.3]))  # p = 0.7, so p_m = 0.65 and r = 0.35
        >>> round(t.value(s, torch.tensor([1.0])).item(), 4)
        0.1874
    """

    name: ClassVar[str] = "shifted_focal"
    kernel: ClassVar[KernelCode | None] = None
    linear_in_target: ClassVar[bool] = True

    def __init__(self, gamma: float, shift: float) -> None:
        self.gamma = float(gamma)
        self.shift = float(shift)
        self._focal = FocalTerm(self.gamma) if self.shift == 0 else None

    def _pieces(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``e^s``, ``1 - r = max(1 - shift - e^s, 0)`` and ``log r = log1p(-(1 - r))``.

        ``r >= shift > 0``, so every piece is finite (``e^s = 0`` at ``s = -inf``).
        """
        e = s.clamp(min=S_FLOOR).exp()  # the clamp keeps autograd finite at s = -inf
        one_minus_r = torch.sub(1 - self.shift, e).clamp(min=0.0)
        return e, one_minus_r, torch.log1p(-one_minus_r)

    def _powers(self, one_minus_r: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(1 - r)^(g - 1)`` (``None`` for ``g < 1``) and ``(1 - r)^g``.

        For ``g >= 1`` the second is the first times ``1 - r``, as ``G`` uses both.
        """
        if self.gamma < 1:
            return None, power(one_minus_r, self.gamma)
        lower = power(one_minus_r, self.gamma - 1)
        return lower, one_minus_r * lower

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1 - r)^gamma log r``."""
        if self._focal is not None:
            return self._focal.value(s, p)
        _, one_minus_r, log_r = self._pieces(s)
        return torch.mul(self._powers(one_minus_r)[1], log_r) * -p

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P e^s [(1 - r)^g / r - g (1 - r)^{g-1} log r]``; 0 where the clip binds.

        For ``g >= 1`` both products are 0 where the clip binds (no ratio, no mask); below 1
        the bracket is written with the ratio ``log(r) / (1 - r)`` (see the module docstring).
        """
        if self._focal is not None:
            return self._focal.grad(s, p)
        e, one_minus_r, log_r = self._pieces(s)
        lower, pw = self._powers(one_minus_r)
        if lower is None:
            return _shifted_gradient(e, one_minus_r, log_r, pw, self.gamma, p)
        inverse_r = torch.sub(1.0, one_minus_r).reciprocal()
        return torch.addcmul(pw * inverse_r, lower, log_r, value=-self.gamma) * e * -p

    def value_and_grad(self, s: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``F`` and ``G`` sharing ``e^s``, ``1 - r``, ``log r`` and the powers of ``1 - r``.

        For ``g >= 1`` outside autograd: :meth:`value` and :meth:`grad`'s operations in the
        same order, updating the temporaries in place (fewer passes and allocations on the
        binary engine's hot path), so the numbers are the same.
        """
        if self._focal is not None:
            return self._focal.value_and_grad(s, p)
        if self.gamma < 1 or not no_graph(s, p):
            return self.value(s, p), self.grad(s, p)
        e = s.clamp(min=S_FLOOR).exp_()
        one_minus_r = torch.sub(1 - self.shift, e).clamp_(min=0.0)
        log_r = torch.neg(one_minus_r).log1p_()
        inverse_r = torch.sub(1.0, one_minus_r).reciprocal_()
        lower = power(one_minus_r, self.gamma - 1)
        pw = one_minus_r.mul_(lower)
        value = torch.mul(pw, log_r).mul_(-p)
        grad = pw.mul_(inverse_r).addcmul_(lower, log_r, value=-self.gamma)
        return value, grad.mul_(e).mul_(-p)

    def kernel_params(self) -> tuple[float, ...]:
        """``(gamma, shift)``."""
        return (self.gamma, self.shift)


def _shifted_gradient(
    e: Tensor, one_minus_r: Tensor, log_r: Tensor, power: Tensor, gamma: float, p: Tensor
) -> Tensor:
    """``G = -P (1 - r)^g e [1/r - g log(r)/(1 - r)]`` for ``g < 1``; 0 where the clip binds.

    ``log(r) / (1 - r)`` is ``0 / 0`` only where the clip binds; there ``(1 - r)^g = 0`` for
    ``g > 0`` and the clip's ``dr/ds = 0`` is applied by a mask for ``g = 0``.
    """
    ratio = torch.div(log_r, one_minus_r).nan_to_num_(nan=-1.0)
    bracket = torch.sub(torch.reciprocal(1 - one_minus_r), ratio, alpha=gamma)
    g = bracket.mul_(e).mul_(power).mul_(-p)
    if gamma == 0:
        g = torch.where(one_minus_r > 0, g, torch.zeros_like(g))
    return g
