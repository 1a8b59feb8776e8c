"""Modules for cross-entropy and binary cross-entropy (see :mod:`crossent.functional`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional._params import legacy_reduction
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
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        smoothing: str = "uniform",
        z_loss: float = 0.0,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        v = validate(
            cross_entropy,
            size_average=size_average,
            ignore_index=ignore_index,
            reduce=reduce,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
            z_loss=z_loss,
            inplace_backward=inplace_backward,
        )
        self.register_buffer("weight", check_weight_vector(weight))
        self.ignore_index = v["ignore_index"]
        self.reduction = legacy_reduction(size_average, reduce, v["reduction"])
        self.label_smoothing = v["label_smoothing"]
        self.smoothing = v["smoothing"]
        self.z_loss = v["z_loss"]
        self.inplace_backward = v["inplace_backward"]

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
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        v = validate(
            binary_cross_entropy_with_logits,
            weight=weight,
            size_average=size_average,
            reduce=reduce,
            reduction=reduction,
            pos_weight=pos_weight,
            label_smoothing=label_smoothing,
        )
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = legacy_reduction(size_average, reduce, v["reduction"])
        self.label_smoothing = v["label_smoothing"]

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
