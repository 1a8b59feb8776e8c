"""The settings of one engine call and the reductions every back end shares.

:class:`EngineOptions` is what the engine (:mod:`crossent.engine`), the GPU kernels
(:mod:`crossent.kernels`) and the fused linear layer (:mod:`crossent.linear`) are told about a
call once its arguments are validated; :func:`reduction_scale` and :func:`reduce_losses` give
PyTorch's reductions (``mean`` divides by the non-ignored count, or the sum of the target
classes' weights) to every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from crossent.core.autograd import compute_dtype
from crossent.core.targets import Targets, divide_or_zero
from crossent.core.term import Term


class RowTargets(Protocol):
    """What the reductions and the route choice read of prepared targets.

    :class:`crossent.core.targets.Targets`, and the per-rank targets of the
    vocabulary-parallel losses (:mod:`crossent.distributed`).
    """

    index: Tensor | None
    valid: Tensor
    denominator: Tensor


@dataclass(frozen=True)
class EngineOptions:
    """Settings of one engine call (already validated)."""

    term: Term
    weight: Tensor | None
    class_scale: Tensor | None
    ignore_index: int
    reduction: str
    label_smoothing: float
    smoothing: str
    z_loss: float
    inplace_backward: bool

    def fast_path(self, targets: RowTargets) -> bool:
        """Whether the one-hot fast path applies (one gather per row)."""
        return (
            targets.index is not None
            and self.label_smoothing == 0
            and self.term.vanishes_where_target_zero
        )

    def linear_route(self, targets: Targets) -> bool:
        """Whether the smoothed-index route applies: ``P = off + (on - off) onehot(t)``.

        For class indices and a term linear in the target; span smoothing's ``P`` is not of
        that form.
        """
        return targets.index is not None and targets.span is None and self.term.linear_in_target

    def softmax_rows(self, z: Tensor, targets: Targets) -> bool:
        """Whether :func:`fast_softmax_rows` applies to the ``(N, K, D)`` logits ``z``.

        The one-hot fast path for ``(N, K)`` logits in their compute dtype with a separate
        gradient buffer (not in place).
        """
        return (
            self.fast_path(targets)
            and z.shape[2] == 1
            and not self.inplace_backward
            and z.dtype == compute_dtype(z.dtype)
        )


def reduction_scale(targets: RowTargets, reduction: str, dtype: torch.dtype) -> Tensor:
    """The factor each element's gradient gets from the reduction (a 0-dim tensor)."""
    if reduction == "mean":
        denom = targets.denominator.to(dtype)
        # All targets ignored / all weights zero: loss 0 and zero gradient (PyTorch: NaN).
        return divide_or_zero(torch.ones_like(denom), denom)
    return torch.ones((), dtype=dtype, device=targets.valid.device)


def reduce_losses(losses: Tensor, targets: RowTargets, reduction: str) -> Tensor:
    """Apply ``reduction`` to per-element losses ``(N, D)``.

    float32 losses are summed in float64 (``N`` numbers: nothing next to the loss itself), so a
    mean of losses near float32's largest value stays finite where their sum would overflow.
    """
    if reduction == "none":
        return losses
    total = losses.sum(dtype=torch.float64 if losses.dtype == torch.float32 else None)
    if reduction == "sum":
        return total.to(losses.dtype)
    denom = targets.denominator.to(total.dtype)
    return divide_or_zero(total, denom).to(losses.dtype)
