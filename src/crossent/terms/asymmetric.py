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
from crossent.terms._numerics import S_FLOOR


class ShiftedFocalTerm(Term):
    r"""Focal term of the probability shifted up by ``shift`` (ASL's negative half).

    ``F(s, P) = -P (1 - r)^gamma log r`` with ``r = min(e^s + shift, 1)`` (see the module
    docstring for ``G``). The binary engine runs it on the negative outcome; it has no block
    in the GPU kernel template (binary losses run on the PyTorch engine).

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

    def _pieces(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``r``, ``1 - r = max(-expm1(s) - shift, 0)`` and ``log r``."""
        floored = s.clamp(min=S_FLOOR)  # e^s = 0 below: r = shift exactly, as at s = -inf
        one_minus_r = (-torch.expm1(floored) - self.shift).clamp(min=0.0)
        log_r = torch.log1p(-one_minus_r) if self.shift else s  # r = e^s without a shift
        return 1 - one_minus_r, one_minus_r, log_r

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1 - r)^gamma log r``."""
        _, one_minus_r, log_r = self._pieces(s)
        return -p * one_minus_r.pow(self.gamma) * log_r

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1 - r)^g [e^s / r - g e^s log(r)/(1 - r)]``; 0 where the clip binds.

        Without a shift ``r = e^s`` and ``e^s / r = 1`` (then this is :class:`FocalTerm`'s
        ``G`` and finite at ``s = -inf``); with one, ``r >= shift > 0``.
        """
        floored = s.clamp(min=S_FLOOR)
        r, one_minus_r, log_r = self._pieces(floored)
        e = torch.exp(floored)
        # log(r) / (1 - r) -> -1 as r -> 1 (a saturated negative outcome)
        safe = torch.where(one_minus_r > 0, one_minus_r, torch.ones_like(r))
        ratio = torch.where(one_minus_r > 0, log_r / safe, -torch.ones_like(r))
        e_over_r = e / r if self.shift else torch.ones_like(e)
        g = -p * one_minus_r.pow(self.gamma) * (e_over_r - self.gamma * e * ratio)
        if self.shift:  # r = min(e^s + shift, 1) is constant where the clip binds
            g = torch.where(one_minus_r > 0, g, torch.zeros_like(g))
        return g

    def kernel_params(self) -> tuple[float, ...]:
        """``(gamma, shift)``."""
        return (self.gamma, self.shift)
