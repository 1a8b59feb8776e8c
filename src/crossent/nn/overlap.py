"""Modules for the overlap losses (see :mod:`crossent.functional.overlap` for the math).

Each module checks its settings when it is built, so a bad hyper-parameter fails at
construction (and in :func:`crossent.get_loss`), not at the first batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.params import validate
from crossent.functional._overlap_sets import check_tversky_sum
from crossent.functional.overlap import (
    dice_loss,
    focal_tversky_loss,
    tversky_from_statistics,
    tversky_loss,
    tversky_statistics,
    unified_focal_loss,
    unified_from_statistics,
    unified_statistics,
)


class _OverlapLoss(torch.nn.Module):
    """Settings shared by every overlap loss."""

    def __init__(
        self, mode: str, smooth: float, per_image: bool, ignore_index: int, reduction: str
    ) -> None:
        super().__init__()
        v = validate(
            dice_loss,
            mode=mode,
            smooth=smooth,
            per_image=per_image,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.mode, self.smooth, self.per_image = mode, v["smooth"], per_image
        self.ignore_index, self.reduction = v["ignore_index"], reduction

    def _common(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "smooth": self.smooth,
            "per_image": self.per_image,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
        }

    def statistics(self, input: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        """The sums the loss is formed from (the Tversky family: ``TP, FP, FN`` per class).

        With ``per_image=False`` they are sums over the images and pixels of the batch, so the
        statistics of two batches add up to those of their union (the fused linear layer,
        :func:`crossent.linear_loss`, sums them over chunks of rows); with ``per_image=True``
        they have a leading ``N``. ``self(input, target)`` equals
        ``self.loss_from_statistics(self.statistics(input, target))``.
        """
        common = {"mode": self.mode, "per_image": self.per_image, "ignore_index": self.ignore_index}
        return tversky_statistics(input, target, **common)

    def loss_from_statistics(self, stats: tuple[Tensor, ...]) -> Tensor:
        """The loss from :meth:`statistics` (reduced as ``reduction`` says)."""
        return tversky_from_statistics(
            stats, **self._index_settings(), smooth=self.smooth, reduction=self.reduction
        )

    def _index_settings(self) -> dict[str, float]:
        """``alpha``, ``beta`` (and ``gamma``) of the Tversky index; Dice: ``1/2, 1/2``."""
        return {"alpha": 0.5, "beta": 0.5}

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return ", ".join(f"{k}={v!r}" for k, v in self._settings().items())

    def _settings(self) -> dict[str, object]:
        return self._common()


class DiceLoss(_OverlapLoss):
    """Module form of :func:`crossent.dice_loss`.

    Example:
        >>> import torch
        >>> DiceLoss()(torch.zeros(1, 2, 2), torch.tensor([[0, 1]])).item()
        0.25
    """

    def __init__(
        self,
        mode: str = "multiclass",
        smooth: float = 1.0,
        per_image: bool = False,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, smooth, per_image, ignore_index, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.dice_loss`)."""
        return dice_loss(input, target, **self._common())


class TverskyLoss(_OverlapLoss):
    """Module form of :func:`crossent.tversky_loss`.

    Example:
        >>> import torch
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7, mode="binary")
        >>> round(loss(torch.zeros(1, 1, 4), torch.tensor([[[1.0, 1, 0, 0]]])).item(), 4)
        0.3333
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        mode: str = "multiclass",
        smooth: float = 1.0,
        per_image: bool = False,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, smooth, per_image, ignore_index, reduction)
        v = validate(tversky_loss, alpha=alpha, beta=beta)
        check_tversky_sum(v["alpha"], v["beta"])
        self.alpha, self.beta = v["alpha"], v["beta"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.tversky_loss`)."""
        return tversky_loss(input, target, alpha=self.alpha, beta=self.beta, **self._common())

    def _index_settings(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta}

    def _settings(self) -> dict[str, object]:
        return {"alpha": self.alpha, "beta": self.beta, **self._common()}


class FocalTverskyLoss(_OverlapLoss):
    """Module form of :func:`crossent.focal_tversky_loss`.

    Example:
        >>> import torch
        >>> loss = FocalTverskyLoss(gamma=0.75, mode="binary")
        >>> round(loss(torch.zeros(1, 1, 4), torch.tensor([[[1.0, 1, 0, 0]]])).item(), 4)
        0.4387
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        mode: str = "multiclass",
        smooth: float = 1.0,
        per_image: bool = False,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, smooth, per_image, ignore_index, reduction)
        v = validate(focal_tversky_loss, alpha=alpha, beta=beta, gamma=gamma)
        check_tversky_sum(v["alpha"], v["beta"])
        self.alpha, self.beta, self.gamma = v["alpha"], v["beta"], v["gamma"]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.focal_tversky_loss`)."""
        return focal_tversky_loss(
            input, target, alpha=self.alpha, beta=self.beta, gamma=self.gamma, **self._common()
        )

    def _index_settings(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}

    def _settings(self) -> dict[str, object]:
        return {**self._index_settings(), **self._common()}


class UnifiedFocalLoss(_OverlapLoss):
    """Module form of :func:`crossent.unified_focal_loss`.

    Example:
        >>> import torch
        >>> loss = UnifiedFocalLoss(weight=0.5, delta=0.6, gamma=0.5)
        >>> loss(torch.randn(2, 2, 8, 8), torch.randint(0, 2, (2, 8, 8))).shape
        torch.Size([])
    """

    def __init__(
        self,
        weight: float = 0.5,
        delta: float = 0.6,
        gamma: float = 0.5,
        asymmetric: bool = True,
        mode: str = "multiclass",
        smooth: float = 1.0,
        per_image: bool = False,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, smooth, per_image, ignore_index, reduction)
        v = validate(
            unified_focal_loss, weight=weight, delta=delta, gamma=gamma, asymmetric=asymmetric
        )
        self.weight, self.delta, self.gamma = v["weight"], v["delta"], v["gamma"]
        self.asymmetric = asymmetric

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (see :func:`crossent.unified_focal_loss`)."""
        return unified_focal_loss(
            input,
            target,
            weight=self.weight,
            delta=self.delta,
            gamma=self.gamma,
            asymmetric=self.asymmetric,
            **self._common(),
        )

    def statistics(self, input: Tensor, target: Tensor) -> tuple[Tensor, ...]:
        """Focal sum, valid pixels and ``TP, FP, FN`` (see :meth:`_OverlapLoss.statistics`)."""
        return unified_statistics(
            input,
            target,
            delta=self.delta,
            gamma=self.gamma,
            asymmetric=self.asymmetric,
            mode=self.mode,
            per_image=self.per_image,
            ignore_index=self.ignore_index,
        )

    def loss_from_statistics(self, stats: tuple[Tensor, ...]) -> Tensor:
        """The loss from :meth:`statistics` (reduced over images with ``per_image``)."""
        return unified_from_statistics(
            stats,  # type: ignore[arg-type]
            weight=self.weight,
            delta=self.delta,
            gamma=self.gamma,
            asymmetric=self.asymmetric,
            smooth=self.smooth,
            reduction=self.reduction,
        )

    def _settings(self) -> dict[str, object]:
        hyper = {"weight": self.weight, "delta": self.delta, "gamma": self.gamma}
        return {**hyper, "asymmetric": self.asymmetric, **self._common()}
