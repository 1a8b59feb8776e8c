"""Modules for cross-entropy and binary cross-entropy (see :mod:`crossent.functional`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent.core import checks
from crossent.functional.cross_entropy import binary_cross_entropy_with_logits, cross_entropy
from crossent.nn._base import TermModule, check_weight_vector
from crossent.terms import CrossEntropyTerm, Term


class CrossEntropyLoss(TermModule, torch.nn.Module):
    """Module form of :func:`crossent.cross_entropy` (see it for the math and arguments).

    Class weights are a buffer, so they follow ``.to(device)`` and the state dict.

    Example:
        >>> import torch
        >>> loss = CrossEntropyLoss(label_smoothing=0.1)
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2])).shape
        torch.Size([])
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
        z_loss: float = 0.0,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", check_weight_vector(weight))
        self.ignore_index = checks.check_ignore_index(ignore_index)
        self.reduction = checks.check_reduction(reduction)
        self.label_smoothing = checks.check_real(
            "label_smoothing", label_smoothing, low=0.0, high=1.0
        )
        checks.check_choice("smoothing", smoothing, ("uniform", "others"))
        self.smoothing = smoothing
        self.z_loss = checks.check_real("z_loss", z_loss, low=0.0)
        self.inplace_backward = inplace_backward

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.cross_entropy`)."""
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            smoothing=self.smoothing,
            z_loss=self.z_loss,
            inplace_backward=self.inplace_backward,
        )

    def term(self) -> Term:
        """:class:`crossent.terms.CrossEntropyTerm`."""
        return CrossEntropyTerm()

    def engine_options(self) -> dict[str, Any]:
        """The engine's arguments (``z_loss`` included)."""
        return {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
            "smoothing": self.smoothing,
            "z_loss": self.z_loss,
            "class_scale": None,
        }

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
            f"smoothing={self.smoothing!r}, ignore_index={self.ignore_index}, z_loss={self.z_loss}"
        )


class BCEWithLogitsLoss(torch.nn.Module):
    """Module form of :func:`crossent.binary_cross_entropy_with_logits`.

    Example:
        >>> import torch
        >>> BCEWithLogitsLoss()(torch.zeros(3), torch.ones(3)).item() > 0
        True
    """

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = checks.check_reduction(reduction)
        self.label_smoothing = checks.check_real(
            "label_smoothing", label_smoothing, low=0.0, high=1.0
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.binary_cross_entropy_with_logits`)."""
        return binary_cross_entropy_with_logits(
            input,
            target,
            weight=self.weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )
