"""Modules for Poly-1, the confidence penalty and the Brier loss."""

from __future__ import annotations

from torch import Tensor

from crossent.core.params import validate
from crossent.functional.regularized import (
    brier_loss,
    entropy_regularized_cross_entropy,
    poly1_cross_entropy,
)
from crossent.nn._base import TermLoss
from crossent.terms import BrierTerm, ConfidencePenaltyTerm, Poly1Term, Term


class Poly1CrossEntropyLoss(TermLoss):
    """Module form of :func:`crossent.poly1_cross_entropy` (``CE + epsilon (1 - p_t)``).

    Example:
        >>> import torch
        >>> round(Poly1CrossEntropyLoss()(torch.zeros(1, 2), torch.tensor([0])).item(), 4)
        1.1931
    """

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
        inplace_backward: bool = False,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
            inplace_backward=inplace_backward,
        )
        self.epsilon = validate(poly1_cross_entropy, epsilon=epsilon)["epsilon"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.poly1_cross_entropy`)."""
        return poly1_cross_entropy(input, target, epsilon=self.epsilon, **self.common())

    def hyperparameters(self) -> dict[str, object]:
        """``epsilon``."""
        return {"epsilon": self.epsilon}

    def term(self) -> Term:
        """:class:`crossent.terms.Poly1Term` with ``epsilon``."""
        return Poly1Term(self.epsilon)


class EntropyRegularizedCrossEntropyLoss(TermLoss):
    """Module form of :func:`crossent.entropy_regularized_cross_entropy` (``CE - beta H``).

    Example:
        >>> import torch
        >>> loss = EntropyRegularizedCrossEntropyLoss(beta=0.1)
        >>> round(loss(torch.zeros(1, 2), torch.tensor([0])).item(), 4)
        0.6238
    """

    def __init__(
        self,
        *,
        beta: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
        inplace_backward: bool = False,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
            inplace_backward=inplace_backward,
        )
        self.beta = validate(entropy_regularized_cross_entropy, beta=beta)["beta"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.entropy_regularized_cross_entropy`)."""
        return entropy_regularized_cross_entropy(input, target, beta=self.beta, **self.common())

    def hyperparameters(self) -> dict[str, object]:
        """``beta``."""
        return {"beta": self.beta}

    def term(self) -> Term:
        """:class:`crossent.terms.ConfidencePenaltyTerm` with ``beta``."""
        return ConfidencePenaltyTerm(self.beta)


class BrierLoss(TermLoss):
    """Module form of :func:`crossent.brier_loss` (``sum_k (p_k - P_k)^2``).

    Example:
        >>> import torch
        >>> BrierLoss()(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.5000)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.brier_loss`)."""
        return brier_loss(input, target, **self.common())

    def term(self) -> Term:
        """:class:`crossent.terms.BrierTerm`."""
        return BrierTerm()
