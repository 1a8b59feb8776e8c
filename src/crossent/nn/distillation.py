"""Module for the distillation loss (see :func:`crossent.distillation_loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional.distillation import distillation_loss


class DistillationLoss(torch.nn.Module):
    """Module form of :func:`crossent.distillation_loss` (see it for the math).

    Called as ``loss(student_logits, teacher_logits)`` or with ``labels=...``.

    Example:
        >>> import torch
        >>> z = torch.randn(4, 10)
        >>> DistillationLoss(temperature=2.0)(z, z)
        tensor(0.)
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        divergence: str = "forward_kl",
        mix: float = 0.5,
        alpha: float = 0.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        v = validate(
            distillation_loss,
            temperature=temperature,
            divergence=divergence,
            mix=mix,
            alpha=alpha,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.temperature, self.divergence, self.mix = v["temperature"], divergence, v["mix"]
        self.alpha, self.ignore_index, self.reduction = v["alpha"], v["ignore_index"], reduction

    def forward(
        self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None
    ) -> Tensor:
        """Compute the loss (see :func:`crossent.distillation_loss`)."""
        return distillation_loss(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            divergence=self.divergence,
            mix=self.mix,
            labels=labels,
            alpha=self.alpha,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"temperature={self.temperature}, divergence={self.divergence!r}, mix={self.mix}, "
            f"alpha={self.alpha}, reduction={self.reduction!r}"
        )
