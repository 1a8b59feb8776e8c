"""Module for the distillation loss (see :func:`crossent.distillation_loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core import checks
from crossent.functional import _params
from crossent.functional.distillation import DIVERGENCES, distillation_loss


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
        self.temperature = _params.check_temperature(temperature)
        checks.check_choice("divergence", divergence, DIVERGENCES)
        self.divergence = divergence
        self.mix = _params.check_unit("mix", mix)
        self.alpha = _params.check_unit("alpha", alpha)
        self.ignore_index = checks.check_ignore_index(ignore_index)
        self.reduction = checks.check_reduction(reduction)

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
