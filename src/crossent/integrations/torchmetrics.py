"""Calibration errors as ``torchmetrics.Metric`` objects, on the binning core of crossent.

:class:`CalibrationError` and :class:`ClasswiseCalibrationError` keep **O(bins)** state: the
per-bin counts, confidence sums and hit counts (``3 * n_bins`` float64 numbers per group),
summed over batches and, under DDP, over processes (``dist_reduce_fx="sum"``: one small
all-reduce). torchmetrics' own ``CalibrationError`` keeps every prediction instead. Each equals
:func:`crossent.calibration.expected_calibration_error` on the concatenated predictions.
:class:`AdaptiveCalibrationError` needs every confidence (equal-mass bins sort them), so it keeps
one confidence and one hit per row (per row and class when classwise) and gathers them.

Inputs follow :mod:`crossent.calibration`: ``(N, K)`` probabilities, or ``(N,)``
positive-class probabilities of a binary problem, with ``(N,)`` integer labels; logits with
``from_logits=True`` (nothing is guessed from the values).

Example:
    >>> import torch
    >>> ece = CalibrationError(n_bins=10)
    >>> ece.update(torch.tensor([1.0, 1.0]), torch.tensor([1, 0]))
    >>> ece.update(torch.tensor([0.95, 0.95]), torch.tensor([1, 1]))
    >>> ece.compute()
    tensor(0.2250, dtype=torch.float64)

In a ``LightningModule``: ``self.ece = CalibrationError(from_logits=True)`` in ``__init__``,
``self.ece.update(logits, y)`` and ``self.log("val/ece", self.ece, on_epoch=True)`` in
``validation_step``; Lightning computes, syncs and resets it per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from crossent.calibration import _validation as V
from crossent.calibration.binning import (
    binned_stats,
    calibration_error_from_stats,
    confidences,
    iter_batches,
    quantile_stats,
)
from crossent.core.checks import fail

__all__ = ["AdaptiveCalibrationError", "CalibrationError", "ClasswiseCalibrationError"]


def _check_num_classes(num_classes: object, required: bool) -> int | None:
    if num_classes is None and not required:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        expected = "an int" if required else "an int or None"
        raise TypeError(
            f"Expected `num_classes` to be {expected}, but got {type(num_classes).__name__}"
        )
    if num_classes < 2:
        raise fail("num_classes", ">= 2", num_classes)
    return num_classes


class _CalibrationMetric(Metric):
    """Argument and kind checks shared by the calibration metrics."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        n_bins: int,
        num_classes: int | None,
        *,
        from_logits: bool,
        validate_args: bool,
        num_classes_required: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_bins = V.check_n_bins(n_bins)
        self.num_classes = _check_num_classes(num_classes, num_classes_required)
        self.from_logits = V.check_bool("from_logits", from_logits)
        self.validate_args = V.check_bool("validate_args", validate_args)
        self._kind: tuple[bool, int] | None = None

    def _check_update(self, probs: torch.Tensor, labels: torch.Tensor) -> int:
        """Check one batch and return its number of classes (2 for ``(N,)`` inputs)."""
        num_classes = V.check_inputs(probs, labels)
        if self.num_classes is not None and num_classes != self.num_classes:
            raise fail("probs", f"to have {self.num_classes} classes", num_classes)
        kind = (probs.dim() == 1, num_classes)
        if self._kind is not None and kind != self._kind:
            names = {True: "(N,) binary", False: "(N, K) top-label"}
            raise V.bad(
                "probs",
                f"to hold {names[self._kind[0]]} predictions of {self._kind[1]} classes like "
                "the earlier updates",
                f"{names[kind[0]]} predictions of {num_classes} classes",
            )
        self._kind = kind
        return num_classes

    def reset(self) -> None:
        """Forget every update (and the kind of predictions seen)."""
        super().reset()
        self._kind = None


class _UniformCalibrationError(_CalibrationMetric):
    """Uniform ``(lo, hi]`` bins; state ``(3, G, n_bins)``: counts, confidence and hit sums."""

    stats: torch.Tensor

    def __init__(
        self,
        n_bins: int,
        num_classes: int | None,
        *,
        norm: str,
        debiased: bool,
        classwise: bool,
        from_logits: bool,
        validate_args: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_bins,
            num_classes,
            from_logits=from_logits,
            validate_args=validate_args,
            num_classes_required=classwise,
            **kwargs,
        )
        V.NORM.check("norm", norm)
        V.check_debiased_norm(norm, V.FLAG.check("debiased", debiased))
        self.norm, self.debiased, self.classwise = norm, debiased, classwise
        groups = self.num_classes if classwise and self.num_classes else 1
        zeros = torch.zeros(3, groups, self.n_bins, dtype=torch.float64)
        self.add_state("stats", default=zeros, dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the per-bin statistics of a batch.

        Args:
            probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities (logits
                with ``from_logits=True``).
            labels: ``(N,)`` integer class indices.
        """
        self._check_update(probs, labels)
        stats, _ = binned_stats(
            probs,
            labels,
            n_bins=self.n_bins,
            binning="uniform",
            classwise=self.classwise,
            from_logits=self.from_logits,
            check=V.content_checks(self.validate_args),
        )
        self.stats += stats.to(self.stats.device)

    def compute(self) -> torch.Tensor:
        """The calibration error of every update (float64 0-d tensor; NaN before any)."""
        return calibration_error_from_stats(self.stats, self.norm, self.debiased)


class CalibrationError(_UniformCalibrationError):
    r"""Top-label calibration error (ECE, RMSCE or MCE) over uniform bins, O(bins) state.

    .. math::
        \mathrm{ECE} = \sum_b \frac{|B_b|}{N} |\mathrm{acc}_b - \mathrm{conf}_b|

    (``norm="l2"``: the root of the weighted mean squared gap; ``"max"``: the largest gap), as
    :func:`crossent.calibration.expected_calibration_error` with ``mode="top_label"``, whose
    bins (``(lo, hi]`` over ``[0, 1]``, scikit-learn's edges) and conventions it shares. The
    state is ``3 * n_bins`` float64 numbers, summed across processes.

    Args:
        n_bins: number of uniform bins (default 15, at most 10,000).
        norm: ``"l1"`` (ECE, default), ``"l2"`` (RMSCE) or ``"max"`` (MCE).
        debiased: Kumar et al.'s debiased estimator (needs ``norm="l2"``; default ``False``).
        num_classes: expected ``K`` (2 for ``(N,)`` inputs); ``None`` (default) accepts any,
            but every update until :meth:`reset` must have the kind and ``K`` of the first.
        from_logits: updates are logits (softmax, or sigmoid for ``(N,)``; default ``False``).
        validate_args: run the content checks (finite, in ``[0, 1]``, rows summing to 1,
            labels in range; default ``True``).
        **kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ...).

    Shape:
        - probs: ``(N, K)`` or ``(N,)``; labels: ``(N,)``.
        - output: ``()``, float64.

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """

    def __init__(
        self,
        n_bins: int = 15,
        *,
        norm: str = "l1",
        debiased: bool = False,
        num_classes: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_bins,
            num_classes,
            norm=norm,
            debiased=debiased,
            classwise=False,
            from_logits=from_logits,
            validate_args=validate_args,
            **kwargs,
        )


class ClasswiseCalibrationError(_UniformCalibrationError):
    r"""Classwise calibration error over uniform bins, O(classes x bins) state.

    .. math::
        \mathrm{cwECE} = \frac{1}{K} \sum_{k=1}^{K} \sum_b \frac{|B_{kb}|}{N}
            |\mathrm{acc}_{kb} - \mathrm{conf}_{kb}|

    every class's probability binned against ``labels == k``, as
    :func:`crossent.calibration.classwise_calibration_error` (l2: root mean square, max:
    maximum of the per-class errors). The state is ``3 * num_classes * n_bins`` float64 numbers.

    Args:
        num_classes: ``K`` (2 for ``(N,)`` inputs); fixes the state's shape.
        n_bins: number of uniform bins per class (default 15, at most 10,000).
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``.
        debiased: Kumar et al.'s debiased l2 estimator (default ``False``).
        from_logits: updates are logits (default ``False``).
        validate_args: run the content checks (default ``True``).
        **kwargs: passed to ``torchmetrics.Metric``.

    References:
        Kull et al., `Beyond temperature scaling: Obtaining well-calibrated multiclass
        probabilities with Dirichlet calibration <https://arxiv.org/abs/1910.12656>`_, 2019.
    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        *,
        norm: str = "l1",
        debiased: bool = False,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_bins,
            num_classes,
            norm=norm,
            debiased=debiased,
            classwise=True,
            from_logits=from_logits,
            validate_args=validate_args,
            **kwargs,
        )


class AdaptiveCalibrationError(_CalibrationMetric):
    r"""Adaptive calibration error: l1 ECE over equal-mass bins (keeps one value per row).

    With ``R = n_bins`` bins of equal counts (sizes differ by at most one), the top-label
    AdaECE of Mukhoti et al. 2020, or with ``classwise=True`` Nixon et al.'s ACE (equal-mass
    bins per class), as :func:`crossent.calibration.adaptive_calibration_error`. Equal-mass
    bins sort the confidences, so the state is every row's confidence and hit (``K`` of each
    per row when classwise), gathered across processes (``dist_reduce_fx="cat"``); for
    O(bins) state use :class:`CalibrationError`.

    Args:
        n_bins: number of bins ``R`` (default 15, at most 10,000).
        classwise: Nixon et al.'s classwise ACE (default ``False``: top-label AdaECE).
        num_classes: expected ``K``; ``None`` (default) takes it from the first update.
        from_logits: updates are logits (default ``False``).
        validate_args: run the content checks (default ``True``).
        **kwargs: passed to ``torchmetrics.Metric``.

    References:
        Nixon et al., `Measuring Calibration in Deep Learning
        <https://arxiv.org/abs/1904.01685>`_, 2019.
    """

    def __init__(
        self,
        n_bins: int = 15,
        *,
        classwise: bool = False,
        num_classes: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_bins, num_classes, from_logits=from_logits, validate_args=validate_args, **kwargs
        )
        self.classwise = V.check_bool("classwise", classwise)
        self.add_state("conf", default=[], dist_reduce_fx="cat")
        self.add_state("hits", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep the confidences and hits of a batch.

        Args:
            probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities (logits
                with ``from_logits=True``).
            labels: ``(N,)`` integer class indices.
        """
        num_classes = self._check_update(probs, labels)
        batches = iter_batches(
            probs,
            labels,
            from_logits=self.from_logits,
            check=V.content_checks(self.validate_args),
            num_classes=num_classes,
            per_element=self.classwise,
        )
        conf, hits = confidences(batches, probs.shape[0], self.classwise)
        self.conf.append(conf)
        self.hits.append(hits.to(torch.uint8))  # gathers on every back end, unlike bool

    def compute(self) -> torch.Tensor:
        """The adaptive calibration error of every update (float64 0-d tensor; NaN before any)."""
        if isinstance(self.conf, list) and not self.conf:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        conf, hits = dim_zero_cat(self.conf), dim_zero_cat(self.hits).bool()
        stats, _ = quantile_stats(conf, hits, self.n_bins)
        return calibration_error_from_stats(stats, "l1", False)
