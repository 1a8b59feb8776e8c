r"""The noise-robust terms: generalized cross-entropy (Lq), unhinged, MAE, reverse CE.

Each is bounded where cross-entropy is not (the contract of a term is
:mod:`crossent.core.term`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term
from crossent.terms._numerics import no_graph, prob_minus_target


class LqTerm(Term):
    r"""Generalized cross-entropy, the Lq loss (Zhang & Sabuncu 2018).

    .. math::

        F(s, P) = P \frac{1 - e^{q s}}{q}, \qquad G(s, P) = -P e^{q s};

    ``q = 0`` is cross-entropy (``F = -P s``), ``q = 1`` the unhinged loss. ``1 - e^(qs)`` is
    ``-expm1(q s)``, so small ``q`` stays within float rounding of the ``q -> 0`` limit.
    With ``truncate = k`` (the truncated Lq loss) ``e^s`` is replaced by ``max(e^s, k)``: the
    loss is constant, ``(1 - k^q)/q``, and the gradient 0 where the probability is ``<= k``.

    Reference: Zhang & Sabuncu, `Generalized Cross Entropy Loss for Training Deep Neural
    Networks with Noisy Labels <https://arxiv.org/abs/1805.07836>`_, 2018.

    Example:
        >>> t = LqTerm(1.0)
        >>> t.value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.7500])
    """

    name: ClassVar[str] = "lq"
    kernel: ClassVar[KernelCode | None] = KernelCode.LQ
    linear_in_target: ClassVar[bool] = True

    def __init__(self, q: float, truncate: float | None = None) -> None:
        self.q = float(q)
        self.truncate = truncate
        self._log_k = None if truncate is None else math.log(truncate)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (1 - e^(q s)) / q``; ``-P s`` at ``q = 0``."""
        if self._log_k is not None:
            s = s.clamp(min=self._log_k)  # p -> max(p, k)
        if self.q == 0:
            return -p * s
        # 1 - e^(q s) = -expm1(q s), in [0, 1] for s <= 0: finite even at s = -inf
        f = torch.mul(s, self.q)
        if no_graph(s, p):  # in place on the fresh product (the engine's forward pass)
            return f.expm1_().mul_(-p / self.q)
        return torch.expm1(f) * (-p / self.q)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P e^(q s)``; 0 below the truncation."""
        if self.q == 0:
            g = -p * torch.ones_like(s)
        elif no_graph(s, p):
            g = torch.mul(s, self.q).exp_().mul_(-p)
        else:
            g = -p * torch.exp(self.q * s)
        if self._log_k is not None:
            g = torch.where(s > self._log_k, g, torch.zeros_like(g))
        return g

    def kernel_params(self) -> tuple[float, ...]:
        """``(q, k)`` with ``k = 0`` when not truncated."""
        return (self.q, 0.0 if self.truncate is None else float(self.truncate))

    def kernel_scalars(self) -> tuple[float, float, float]:
        """``(q, log k, 0)`` with ``log k = -inf`` when not truncated."""
        return (self.q, -math.inf if self._log_k is None else self._log_k, 0.0)


class UnhingedTerm(Term):
    r"""Unhinged loss: ``F = P (1 - e^s)``, ``G = -P e^s`` (the Lq loss at ``q = 1``).

    For a one-hot target it is ``1 - p_t``: half of the MAE ``sum_k |P_k - p_k|``, and the
    "MAE" of Ma et al.'s code.

    Reference: van Rooyen et al., `Learning with Symmetric Label Noise: The Importance of
    Being Unhinged <https://arxiv.org/abs/1505.07634>`_, 2015.

    Example:
        >>> UnhingedTerm().value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.7500])
    """

    name: ClassVar[str] = "unhinged"
    kernel: ClassVar[KernelCode | None] = KernelCode.UNHINGED
    linear_in_target: ClassVar[bool] = True

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (1 - e^s)`` with ``1 - e^s = -expm1(s)``."""
        return -p * torch.expm1(s)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P e^s``."""
        return -p * torch.exp(s)


class MAETerm(Term):
    r"""Mean absolute error between the target and the softmax: ``F = |P - e^s|``.

    .. math::

        F(s, P) = \lvert P - e^{s} \rvert, \qquad
        G(s, P) = -\operatorname{sign}(P - e^{s})\, e^{s}.

    It acts on every class (``F(s, 0) = e^s``): ``sum_k |P_k - p_k| = 2 (1 - p_t)`` for a
    one-hot target. ``P - e^s`` is formed as ``(P - 1) - expm1(s)`` where ``P > 1/2``.

    Reference: Ghosh et al., `Robust Loss Functions under Label Noise for Deep Neural
    Networks <https://arxiv.org/abs/1712.09482>`_, 2017.

    Example:
        >>> MAETerm().value(torch.log(torch.tensor([0.25])), torch.tensor([0.0]))
        tensor([0.2500])
    """

    name: ClassVar[str] = "mae"
    kernel: ClassVar[KernelCode | None] = KernelCode.MAE
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``|P - e^s|``."""
        return prob_minus_target(s, p).abs()

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-sign(P - e^s) e^s = sign(e^s - P) e^s``."""
        return torch.sign(prob_minus_target(s, p)) * torch.exp(s)


class ReverseCrossEntropyTerm(Term):
    r"""Reverse cross-entropy (Wang et al. 2019): ``F = -e^s max(log P, A)``, ``G = F``.

    The cross-entropy with the roles of prediction and target swapped; ``log 0`` is
    replaced by ``A < 0`` (the authors' code clamps the one-hot at ``1e-4``, i.e.
    ``A = log(1e-4)``). It acts on every class: ``-A (1 - p_t)`` for a one-hot target.

    Reference: Wang et al., `Symmetric Cross Entropy for Robust Learning with Noisy Labels
    <https://arxiv.org/abs/1908.06112>`_, 2019.

    Example:
        >>> t = ReverseCrossEntropyTerm(-4.0)
        >>> t.value(torch.log(torch.tensor([0.25])), torch.tensor([0.0]))
        tensor([1.])
    """

    name: ClassVar[str] = "reverse_cross_entropy"
    kernel: ClassVar[KernelCode | None] = KernelCode.RCE
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, A: float) -> None:
        self.A = float(A)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-e^s max(log P, A)``."""
        return -torch.exp(s) * torch.log(p).clamp(min=self.A)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``d/ds (-e^s c) = -e^s c``: the value itself."""
        return self.value(s, p)

    def takes_log_of_target(self) -> bool:
        """``log P``: a negative probability target has no value."""
        return True

    def kernel_params(self) -> tuple[float, ...]:
        """``(A,)``."""
        return (self.A,)
