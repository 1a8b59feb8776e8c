"""Modules for the noise-robust losses (see :mod:`crossent.functional.robust`)."""

from __future__ import annotations

from torch import Tensor

from crossent.core.params import validate
from crossent.functional import _params
from crossent.functional.robust import (
    active_passive_loss,
    mae_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    reverse_cross_entropy,
    symmetric_cross_entropy,
    symmetric_term,
    unhinged_loss,
)
from crossent.nn._base import EngineLoss, TermLoss
from crossent.terms import MAETerm, ReverseCrossEntropyTerm, Term, UnhingedTerm


class MAELoss(TermLoss):
    """Module form of :func:`crossent.mae_loss` (``sum_k |P_k - p_k|``).

    Example:
        >>> import torch
        >>> MAELoss()(torch.zeros(1, 2), torch.tensor([0]))
        tensor(1.)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.mae_loss`)."""
        return mae_loss(input, target, **self.common())

    def term(self) -> Term:
        """:class:`crossent.terms.MAETerm`."""
        return MAETerm()


class UnhingedLoss(TermLoss):
    """Module form of :func:`crossent.unhinged_loss` (``1 - p_t``).

    Example:
        >>> import torch
        >>> UnhingedLoss()(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.5000)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.unhinged_loss`)."""
        return unhinged_loss(input, target, **self.common())

    def term(self) -> Term:
        """:class:`crossent.terms.UnhingedTerm`."""
        return UnhingedTerm()


class RCELoss(TermLoss):
    """Module form of :func:`crossent.reverse_cross_entropy`.

    Example:
        >>> import torch
        >>> RCELoss(A=-4.0)(torch.zeros(1, 2), torch.tensor([0]))
        tensor(2.)
    """

    def __init__(
        self,
        *,
        A: float = _params.DEFAULT_A,
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
        self.A = validate(reverse_cross_entropy, A=A)["A"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.reverse_cross_entropy`)."""
        return reverse_cross_entropy(input, target, A=self.A, **self.common())

    def hyperparameters(self) -> dict[str, object]:
        """``A``."""
        return {"A": self.A}

    def term(self) -> Term:
        """:class:`crossent.terms.ReverseCrossEntropyTerm` with ``A``."""
        return ReverseCrossEntropyTerm(self.A)


class SCELoss(TermLoss):
    """Module form of :func:`crossent.symmetric_cross_entropy` (``alpha CE + beta RCE``).

    Example:
        >>> import torch
        >>> SCELoss(alpha=1.0, beta=0.0)(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.6931)
    """

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 1.0,
        A: float = _params.DEFAULT_A,
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
        v = validate(symmetric_cross_entropy, alpha=alpha, beta=beta, A=A)
        self.alpha, self.beta, self.A = v["alpha"], v["beta"], v["A"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.symmetric_cross_entropy`)."""
        return symmetric_cross_entropy(
            input, target, alpha=self.alpha, beta=self.beta, A=self.A, **self.common()
        )

    def hyperparameters(self) -> dict[str, object]:
        """``alpha``, ``beta``, ``A``."""
        return {"alpha": self.alpha, "beta": self.beta, "A": self.A}

    def term(self) -> Term:
        """``alpha CE + beta RCE`` (:func:`crossent.functional.robust.symmetric_term`)."""
        return symmetric_term(self.alpha, self.beta, self.A)


class NCELoss(EngineLoss):
    """Module form of :func:`crossent.normalized_cross_entropy`.

    Example:
        >>> import torch
        >>> NCELoss()(torch.zeros(1, 4), torch.tensor([0]))
        tensor(0.2500)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.normalized_cross_entropy`)."""
        return normalized_cross_entropy(input, target, **self.common())


class NFLoss(EngineLoss):
    """Module form of :func:`crossent.normalized_focal_loss`.

    Example:
        >>> import torch
        >>> NFLoss(gamma=0.5)(torch.zeros(1, 4), torch.tensor([0]))
        tensor(0.2500)
    """

    def __init__(
        self,
        *,
        gamma: float = 0.5,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
        )
        self.gamma = validate(normalized_focal_loss, gamma=gamma)["gamma"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.normalized_focal_loss`)."""
        return normalized_focal_loss(input, target, gamma=self.gamma, **self.common())

    def hyperparameters(self) -> dict[str, object]:
        """``gamma``."""
        return {"gamma": self.gamma}


class APLoss(EngineLoss):
    """Module form of :func:`crossent.active_passive_loss` (``alpha active + beta passive``).

    Example:
        >>> import torch
        >>> APLoss(active="nce", passive="mae")(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.)
    """

    def __init__(
        self,
        *,
        active: str = "nce",
        passive: str = "rce",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.5,
        A: float = _params.DEFAULT_A,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
        )
        v = validate(
            active_passive_loss,
            active=active,
            passive=passive,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            A=A,
        )
        self.active, self.passive = active, passive
        self.alpha, self.beta, self.gamma, self.A = v["alpha"], v["beta"], v["gamma"], v["A"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.active_passive_loss`)."""
        return active_passive_loss(
            input,
            target,
            active=self.active,
            passive=self.passive,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            A=self.A,
            **self.common(),
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"active={self.active!r}, passive={self.passive!r}, alpha={self.alpha}, "
            f"beta={self.beta}, gamma={self.gamma}, A={self.A:.4g}, {super().extra_repr()}"
        )
