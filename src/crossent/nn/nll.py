"""Module for the negative log-likelihood loss (see :func:`crossent.nll_loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.checks import check_ignore_index
from crossent.functional.nll import nll_loss


class NLLLoss(torch.nn.Module):
    """Module form of :func:`crossent.nll_loss`: log-probabilities in, as PyTorch's.

    Example:
        >>> import torch
        >>> logp = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> NLLLoss()(logp, torch.tensor([1]))
        tensor(0.6931)
    """

    weight: Tensor | None

    def __init__(
        self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = checks.check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.nll_loss`)."""
        return nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"
