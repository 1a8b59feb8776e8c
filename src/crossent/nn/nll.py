"""Module for the negative log-likelihood loss (see :func:`crossent.nll_loss`)."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional._params import legacy_reduction
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
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        v = validate(
            nll_loss,
            weight=weight,
            size_average=size_average,
            ignore_index=ignore_index,
            reduce=reduce,
            reduction=reduction,
        )
        self.register_buffer("weight", weight)
        self.ignore_index = v["ignore_index"]
        self.reduction = legacy_reduction(size_average, reduce, v["reduction"])

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
