r"""Regularized cross-entropies and the Brier score: poly-1, the confidence penalty, Brier.

The contract of a term is :mod:`crossent.core.term`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term
from crossent.terms._numerics import S_FLOOR, prob_minus_target


class Poly1Term(Term):
    r"""Poly-1 (Leng et al. 2022): cross-entropy plus ``epsilon (1 - p)`` per target mass.

    .. math::

        F(s, P) = P\left(-s + \epsilon (1 - e^{s})\right), \qquad
        G(s, P) = P\left(-1 - \epsilon e^{s}\right).

    ``1 - e^s`` is ``-expm1(s)``. For a smoothed target this equals the paper's
    ``CE(P) + epsilon (1 - sum_k P_k p_k)``.

    Reference: Leng et al., `PolyLoss: A Polynomial Expansion Perspective of Classification
    Loss Functions <https://arxiv.org/abs/2204.12511>`_, 2022.

    Example:
        >>> t = Poly1Term(1.0)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        1.1931
    """

    name: ClassVar[str] = "poly1"
    kernel: ClassVar[KernelCode | None] = KernelCode.POLY1
    linear_in_target: ClassVar[bool] = True

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(epsilon)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (-s - eps expm1(s))``."""
        return -p * (s + self.epsilon * torch.expm1(s))

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (-1 - eps e^s)``."""
        return -p * (1 + self.epsilon * torch.exp(s))

    def kernel_params(self) -> tuple[float, ...]:
        """``(epsilon,)``."""
        return (self.epsilon,)


class ConfidencePenaltyTerm(Term):
    r"""Cross-entropy with the confidence penalty (Pereyra et al. 2017): ``CE - beta H(p)``.

    .. math::

        F(s, P) = -P s + \beta e^{s} s, \qquad G(s, P) = -P + \beta e^{s} (s + 1);

    summed over classes, ``sum_k e^{s_k} s_k = -H(p)``. It acts on every class.

    Reference: Pereyra et al., `Regularizing Neural Networks by Penalizing Confident Output
    Distributions <https://arxiv.org/abs/1701.06548>`_, 2017.

    Example:
        >>> t = ConfidencePenaltyTerm(0.1)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.6585
    """

    name: ClassVar[str] = "confidence_penalty"
    kernel: ClassVar[KernelCode | None] = KernelCode.CONF_PENALTY
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P s + beta e^s s`` (``-P s = 0`` where ``P = 0``, ``e^s s = 0`` at ``-inf``)."""
        sf = s.clamp(min=S_FLOOR)
        ce = torch.where(p == 0, torch.zeros_like(s), -p * s)
        return ce + self.beta * torch.exp(sf) * sf

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P + beta e^s (s + 1)``."""
        sf = s.clamp(min=S_FLOOR)
        return self.beta * torch.exp(sf) * (sf + 1) - p

    def kernel_params(self) -> tuple[float, ...]:
        """``(beta,)``."""
        return (self.beta,)


class BrierTerm(Term):
    r"""The Brier score as a training loss: ``F = (e^s - P)^2``, ``G = 2 (e^s - P) e^s``.

    Summed over classes it is ``sum_k (p_k - P_k)^2`` (no ``1/K``). It acts on every class.
    ``e^s - P`` is formed as ``expm1(s) + (1 - P)`` where ``P > 1/2``.

    Reference: Brier, `Verification of Forecasts Expressed in Terms of Probability
    <https://doi.org/10.1175/1520-0493(1950)078%3C0001:VOFEIT%3E2.0.CO;2>`_, 1950.

    Example:
        >>> BrierTerm().value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.5625])
    """

    name: ClassVar[str] = "brier"
    kernel: ClassVar[KernelCode | None] = KernelCode.BRIER
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``(e^s - P)^2``."""
        return prob_minus_target(s, p).square()

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``2 (e^s - P) e^s``."""
        return 2 * prob_minus_target(s, p) * torch.exp(s)
