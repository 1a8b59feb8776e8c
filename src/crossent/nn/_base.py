"""Shared settings of the loss modules built on the multiclass engine."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.params import check_all
from crossent.core.term import Term
from crossent.functional import _params


class TermModule:
    """A loss module computed by one engine term: it says which, and with what settings.

    :func:`crossent.linear_loss` fuses every such module chunk by chunk through the engine
    (and the GPU kernel template) from these two declarations; a registry loss that is not a
    :class:`TermModule` goes through autograd per chunk instead.
    """

    def term(self) -> Term:
        """The engine term of this loss, from the module's (validated) hyper-parameters."""
        raise NotImplementedError

    def engine_options(self) -> dict[str, Any]:
        """The engine's arguments of this loss, as keyword arguments of the engine.

        ``weight``, ``ignore_index``, ``reduction``, ``label_smoothing``, ``smoothing``,
        ``z_loss`` and ``class_scale`` (focal's ``alpha``).
        """
        raise NotImplementedError


def check_weight_vector(weight: Tensor | None) -> Tensor | None:
    """A module's class ``weight`` at construction: ``None`` or a 1-D tensor.

    Its length and values are checked against the logits at call time.
    """
    if weight is not None:
        checks.check_tensor("weight", weight)
        if weight.dim() != 1:
            raise checks.fail("weight", "to have shape (C,) (one weight per class)", weight)
    return weight


class EngineLoss(torch.nn.Module):
    """Base of the modules whose function takes the engine's common arguments.

    Stores ``weight`` (a buffer, so it follows ``.to(device)`` and the state dict),
    ``ignore_index``, ``reduction``, ``label_smoothing`` and ``smoothing``, each validated at
    construction; :meth:`common` returns them as keyword arguments for the function.
    """

    weight: Tensor | None

    def __init__(
        self,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        smoothing: str = "uniform",
    ) -> None:
        super().__init__()
        common = check_all(
            _params.ENGINE,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            smoothing=smoothing,
        )
        self.register_buffer("weight", check_weight_vector(weight))
        self.ignore_index = common["ignore_index"]
        self.reduction = common["reduction"]
        self.label_smoothing = common["label_smoothing"]
        self.smoothing = common["smoothing"]

    def common(self) -> dict[str, Any]:
        """The engine's common arguments, for the function."""
        return {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
            "smoothing": self.smoothing,
        }

    def extra_repr(self) -> str:
        """Settings shown by ``repr`` (hyper-parameters first)."""
        own = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        base = (
            f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, smoothing={self.smoothing!r}"
        )
        return f"{own}, {base}" if own else base

    def hyperparameters(self) -> dict[str, object]:
        """The loss's own settings (for ``repr``)."""
        return {}


class TermLoss(TermModule, EngineLoss):
    """Base of the modules whose function is one engine term (focal, GCE, MAE, poly-1, ...).

    :class:`EngineLoss` plus ``inplace_backward`` (write the gradient into the logits'
    storage; see :func:`crossent.cross_entropy`), stored and passed on by :meth:`common`.

    The normalized losses (:class:`crossent.nn.NCELoss`, ``NFLoss``, ``APLoss``) are not one
    engine term and stay on :class:`EngineLoss`, without the argument.
    """

    def __init__(
        self,
        *,
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
        )
        self.inplace_backward = _params.FLAG.check("inplace_backward", inplace_backward)

    def common(self) -> dict[str, Any]:
        """The engine's common arguments and ``inplace_backward``, for the function."""
        return {**super().common(), "inplace_backward": self.inplace_backward}

    def engine_options(self) -> dict[str, Any]:
        """:meth:`EngineLoss.common` with no z-loss and no per-class scale."""
        return {**EngineLoss.common(self), "z_loss": 0.0, "class_scale": None}

    def extra_repr(self) -> str:
        """Settings shown by ``repr`` (``inplace_backward`` only when set)."""
        base = super().extra_repr()
        return f"{base}, inplace_backward=True" if self.inplace_backward else base
