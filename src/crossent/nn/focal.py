"""Modules for the focal losses (see :mod:`crossent.functional.focal`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.core.term import Term
from crossent.functional.focal import focal_loss, focal_term, sigmoid_focal_loss
from crossent.nn._base import TermLoss


class FocalLoss(TermLoss):
    """Module form of :func:`crossent.focal_loss` (see it for the math and arguments).

    ``alpha`` (per-class) and ``weight`` are buffers. Invalid settings (``gamma < 0``, a
    float ``alpha``) raise here, at construction.

    Example:
        >>> import torch
        >>> loss = FocalLoss(gamma=2.0, alpha=[0.25, 0.75])
        >>> loss(torch.zeros(2, 2), torch.tensor([0, 1])).shape
        torch.Size([])
    """

    alpha: Tensor | None

    def __init__(
        self,
        *,
        gamma: float | str = 2.0,
        alpha: Sequence[float] | Tensor | None = None,
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
        v = validate(focal_loss, gamma=gamma, alpha=alpha)
        self.gamma, checked = v["gamma"], v["alpha"]
        if checked is not None and not isinstance(alpha, Tensor):
            checked = checked.to(torch.get_default_dtype())  # a buffer, like PyTorch's own
        self.register_buffer("alpha", checked)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.focal_loss`)."""
        return focal_loss(input, target, gamma=self.gamma, alpha=self.alpha, **self.common())

    def term(self) -> Term:
        """:class:`crossent.terms.FocalTerm` (FLSD-53's schedule for ``gamma="flsd-53"``)."""
        return focal_term(self.gamma)

    def engine_options(self) -> dict[str, Any]:
        """The engine's arguments, with ``alpha`` as the per-class scale."""
        return {**super().engine_options(), "class_scale": self.alpha}

    def hyperparameters(self) -> dict[str, object]:
        """``gamma`` and whether ``alpha`` is set."""
        return {"gamma": self.gamma, "alpha": None if self.alpha is None else self.alpha.tolist()}


class SigmoidFocalLoss(torch.nn.Module):
    """Module form of :func:`crossent.sigmoid_focal_loss` (RetinaNet's focal loss).

    Example:
        >>> import torch
        >>> SigmoidFocalLoss(alpha=None)(torch.zeros(3), torch.ones(3)).item() > 0
        True
    """

    def __init__(
        self, *, gamma: float = 2.0, alpha: float | None = 0.25, reduction: str = "mean"
    ) -> None:
        super().__init__()
        v = validate(sigmoid_focal_loss, gamma=gamma, alpha=alpha, reduction=reduction)
        self.gamma, self.alpha, self.reduction = v["gamma"], v["alpha"], v["reduction"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.sigmoid_focal_loss`)."""
        return sigmoid_focal_loss(
            input, target, gamma=self.gamma, alpha=self.alpha, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"
