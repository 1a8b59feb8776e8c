"""Module of the asymmetric loss (see :func:`crossent.asymmetric_loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional.asymmetric import asymmetric_loss


class AsymmetricLoss(torch.nn.Module):
    """Module form of :func:`crossent.asymmetric_loss` (ASL, Ridnik et al. 2021).

    ``weight`` is a buffer, so it follows ``.to(device)`` and the state dict.

    Example:
        >>> import torch
        >>> loss = AsymmetricLoss(gamma_neg=4.0, clip=0.05)
        >>> loss(torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])).shape
        torch.Size([])
    """

    weight: Tensor | None

    def __init__(
        self,
        *,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        weight: Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        v = validate(
            asymmetric_loss,
            gamma_pos=gamma_pos,
            gamma_neg=gamma_neg,
            clip=clip,
            weight=weight,
            reduction=reduction,
        )
        self.gamma_pos, self.gamma_neg, self.clip = v["gamma_pos"], v["gamma_neg"], v["clip"]
        self.register_buffer("weight", weight)
        self.reduction = v["reduction"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.asymmetric_loss`)."""
        return asymmetric_loss(
            input,
            target,
            gamma_pos=self.gamma_pos,
            gamma_neg=self.gamma_neg,
            clip=self.clip,
            weight=self.weight,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, clip={self.clip}, "
            f"reduction={self.reduction!r}"
        )
