"""Modules for generalized cross-entropy (see :mod:`crossent.functional.gce`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional import _params
from crossent.functional.gce import (
    binary_generalized_cross_entropy,
    binary_smooth_generalized_cross_entropy,
    generalized_cross_entropy,
    smooth_generalized_cross_entropy,
)
from crossent.nn._base import TermLoss
from crossent.terms import LqTerm, Term


class GCELoss(TermLoss):
    """Module form of :func:`crossent.generalized_cross_entropy` (the Lq loss).

    Example:
        >>> import torch
        >>> GCELoss(q=0.7)(torch.zeros(2, 3), torch.tensor([0, 2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        q: float = 0.7,
        truncate: float | None = None,
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
        v = validate(generalized_cross_entropy, q=q, truncate=truncate)
        self.q, self.truncate = v["q"], v["truncate"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.generalized_cross_entropy`)."""
        return generalized_cross_entropy(
            input, target, q=self.q, truncate=self.truncate, **self.common()
        )

    def hyperparameters(self) -> dict[str, object]:
        """``q`` and ``truncate``."""
        return {"q": self.q, "truncate": self.truncate}

    def term(self) -> Term:
        """:class:`crossent.terms.LqTerm` with ``q`` and ``truncate``."""
        return LqTerm(self.q, self.truncate)


class SGCELoss(TermLoss):
    """Module form of :func:`crossent.smooth_generalized_cross_entropy`.

    Defaults as the function: ``q=0.7``, ``label_smoothing=0.1``, ``smoothing="others"``.

    Example:
        >>> import torch
        >>> SGCELoss()(torch.zeros(2, 3), torch.tensor([0, 2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        q: float = 0.7,
        label_smoothing: float = 0.1,
        smoothing: str = "others",
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
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
        self.q = validate(smooth_generalized_cross_entropy, q=q)["q"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.smooth_generalized_cross_entropy`)."""
        return smooth_generalized_cross_entropy(input, target, q=self.q, **self.common())

    def hyperparameters(self) -> dict[str, object]:
        """``q``."""
        return {"q": self.q}

    def term(self) -> Term:
        """:class:`crossent.terms.LqTerm` with ``q`` (the smoothing is the engine's)."""
        return LqTerm(self.q)


class _BinaryLqLoss(torch.nn.Module):
    """Shared settings of the binary Lq modules: ``weight``/``pos_weight`` buffers."""

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        q: float,
        weight: Tensor | None,
        pos_weight: Tensor | None,
        reduction: str,
        label_smoothing: float,
    ) -> None:
        super().__init__()
        v = validate(
            binary_generalized_cross_entropy,
            q=q,
            weight=weight,
            pos_weight=pos_weight,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        self.q, self.reduction, self.label_smoothing = v["q"], reduction, v["label_smoothing"]
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"q={self.q}, reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class BinaryGCELoss(_BinaryLqLoss):
    """Module form of :func:`crossent.binary_generalized_cross_entropy`.

    Example:
        >>> import torch
        >>> BinaryGCELoss(q=1.0)(torch.zeros(3), torch.ones(3))
        tensor(0.5000)
    """

    def __init__(
        self,
        *,
        q: float = 0.7,
        truncate: float | None = None,
        weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(q, weight, pos_weight, reduction, label_smoothing)
        self.truncate = validate(binary_generalized_cross_entropy, truncate=truncate)["truncate"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.binary_generalized_cross_entropy`)."""
        return binary_generalized_cross_entropy(
            input,
            target,
            q=self.q,
            truncate=self.truncate,
            weight=self.weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class BinarySGCELoss(_BinaryLqLoss):
    """Module form of :func:`crossent.binary_smooth_generalized_cross_entropy`.

    Example:
        >>> import torch
        >>> BinarySGCELoss()(torch.zeros(3), torch.ones(3)).item() > 0
        True
    """

    def __init__(
        self,
        *,
        q: float = 0.7,
        label_smoothing: float = 0.1,
        smoothing: str = "others",
        weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(q, weight, pos_weight, reduction, label_smoothing)
        self.smoothing = validate(binary_smooth_generalized_cross_entropy, smoothing=smoothing)[
            "smoothing"
        ]
        _params.check_binary_smoothing(label_smoothing, smoothing)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.binary_smooth_generalized_cross_entropy`)."""
        return binary_smooth_generalized_cross_entropy(
            input,
            target,
            q=self.q,
            label_smoothing=self.label_smoothing,
            smoothing=self.smoothing,
            weight=self.weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
        )
