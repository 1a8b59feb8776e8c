"""The numbers behind ``crossent calibrate``: metrics before and after temperature scaling.

For binary predictions (``(N,)`` or ``(N, 2)``) the report also holds the precision-recall curve
of the positive class (a few of its points) and its F1-optimal threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from crossent.calibration.meter import CalibrationMeter
from crossent.calibration.metrics import adaptive_calibration_error
from crossent.calibration.scaling import TemperatureScaling

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class PRCurve(NamedTuple):
    """Precision and recall at every distinct score threshold, highest threshold first.

    Attributes:
        precision: ``TP / (TP + FP)`` when predicting positive for ``score >= threshold``.
        recall: ``TP / P``.
        thresholds: the distinct scores, decreasing.
        average_precision: ``sum_n (R_n - R_{n-1}) P_n`` (scikit-learn's definition).
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> PRCurve:
    """Precision-recall curve of positive-class scores against ``{0, 1}`` labels.

    Args:
        scores: ``(N,)`` scores, higher meaning more likely positive.
        labels: ``(N,)`` labels in ``{0, 1}`` with at least one positive.

    Returns:
        :class:`PRCurve`.

    Example:
        >>> curve = precision_recall_curve(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 1]))
        >>> curve.precision.round(3).tolist(), curve.recall.tolist()
        ([1.0, 0.5, 0.667], [0.5, 0.5, 1.0])
    """
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    positives = labels[order].astype(np.float64)
    # the last row of every run of equal scores: one threshold per distinct score
    last = np.r_[np.flatnonzero(np.diff(ordered)), ordered.size - 1]
    tp = np.cumsum(positives)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return PRCurve(precision, recall, ordered[last], average_precision)


def f1_optimal_threshold(curve: PRCurve) -> dict[str, float]:
    """The threshold with the largest F1 (predict positive when ``score >= threshold``).

    Args:
        curve: a :class:`PRCurve`.

    Returns:
        ``{"threshold", "f1", "precision", "recall"}`` at that threshold.
    """
    denominator = curve.precision + curve.recall
    f1 = np.divide(
        2 * curve.precision * curve.recall,
        denominator,
        out=np.zeros_like(denominator),
        where=denominator > 0,
    )
    best = int(np.argmax(f1))
    return {
        "threshold": float(curve.thresholds[best]),
        "f1": float(f1[best]),
        "precision": float(curve.precision[best]),
        "recall": float(curve.recall[best]),
    }


def pr_curve_points(curve: PRCurve, levels: int = 10) -> list[dict[str, float]]:
    """A few points of a precision-recall curve: the highest threshold reaching each recall.

    For each recall level ``r = 1/levels, 2/levels, ..., 1``, the first point of ``curve``
    (highest threshold) with recall at least ``r``; points shared by several levels appear
    once. Every point is a point of the exact curve.

    Args:
        curve: a :class:`PRCurve`.
        levels: number of recall levels (default 10).

    Returns:
        ``[{"threshold", "precision", "recall"}, ...]``, recall increasing, ending at recall 1.

    Example:
        >>> curve = precision_recall_curve(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 1]))
        >>> [p["threshold"] for p in pr_curve_points(curve, levels=2)]
        [0.9, 0.3]
    """
    targets = np.arange(1, levels + 1) / levels
    # recall is non-decreasing along the curve; 1e-12 absorbs the rounding of tp / P
    indices = np.unique(np.searchsorted(curve.recall, targets - 1e-12, side="left"))
    indices = indices[indices < curve.recall.size]
    return [
        {
            "threshold": float(curve.thresholds[i]),
            "precision": float(curve.precision[i]),
            "recall": float(curve.recall[i]),
        }
        for i in indices
    ]


def binary_curve(values: torch.Tensor, labels: torch.Tensor, from_logits: bool) -> PRCurve | None:
    """The precision-recall curve of binary predictions (``None`` if not binary or no positive)."""
    if not (values.dim() == 1 or values.shape[1] == 2):
        return None
    positives = labels.numpy() == 1
    if not positives.any():
        return None
    return precision_recall_curve(positive_scores(values, from_logits), positives)


def as_logits(values: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """Logits for temperature scaling: the values themselves, or log-probabilities.

    Probabilities are clipped at the dtype's epsilon first (``log p`` for ``(N, K)``,
    ``log p - log(1 - p)`` for ``(N,)``), as the NLL clips them.
    """
    if from_logits:
        return values
    eps = torch.finfo(values.dtype).eps
    if values.dim() == 2:
        return values.clamp(min=eps).log()
    p = values.clamp(eps, 1 - eps)
    return p.log() - torch.log1p(-p)


def positive_scores(values: torch.Tensor, from_logits: bool) -> np.ndarray:
    """Positive-class probabilities of binary predictions (``(N,)`` or ``(N, 2)``)."""
    if values.dim() == 1:
        probs = torch.sigmoid(values) if from_logits else values
    else:
        probs = torch.softmax(values, dim=1)[:, 1] if from_logits else values[:, 1]
    return probs.double().numpy()


def evaluate(
    values: torch.Tensor, labels: torch.Tensor, *, from_logits: bool, n_bins: int
) -> dict[str, float]:
    """Accuracy, NLL, Brier, ECE, MCE, RMSCE, ACE (and F1 for binary) of one set of predictions.

    Args:
        values: ``(N, K)`` or ``(N,)`` probabilities or logits.
        labels: ``(N,)`` class indices.
        from_logits: whether ``values`` are logits.
        n_bins: number of bins of the calibration errors.

    Returns:
        The metrics by name.
    """
    meter = CalibrationMeter(n_bins, from_logits=from_logits)
    meter.update(values, labels)
    result = meter.compute()
    metrics = {name: float(result[name]) for name in ("accuracy", "nll", "brier")}
    metrics.update({name: float(result[name]) for name in ("ece", "mce", "rmsce")})
    ace = adaptive_calibration_error(values, labels, n_bins=n_bins, from_logits=from_logits)
    metrics["ace"] = float(ace)
    curve = binary_curve(values, labels, from_logits)
    if curve is not None:
        best = f1_optimal_threshold(curve)
        metrics.update(
            f1_threshold=best["threshold"], f1=best["f1"], average_precision=curve.average_precision
        )
    return metrics


def calibration_report(
    values: torch.Tensor, labels: torch.Tensor, *, from_logits: bool, n_bins: int
) -> dict[str, object]:
    """Metrics before and after temperature scaling (fitted on the same predictions).

    The temperature is fitted and evaluated on the same rows, so "after" is optimistic; fit on a
    held-out split for an honest estimate. When the fit is impossible (fewer than 20 rows, one
    class) or fails, ``temperature`` and ``after`` are ``None`` and ``temperature_error`` says
    why.

    Args:
        values: ``(N, K)`` or ``(N,)`` probabilities or logits.
        labels: ``(N,)`` class indices.
        from_logits: whether ``values`` are logits.
        n_bins: number of bins of the calibration errors.

    Returns:
        ``{"n", "num_classes", "binary", "input", "n_bins", "temperature",
        "temperature_error", "before", "after"}``, and for binary predictions with a positive
        label ``"pr_curve"``: :func:`pr_curve_points` of the predictions as given (temperature
        scaling moves the thresholds, not the curve).
    """
    before = evaluate(values, labels, from_logits=from_logits, n_bins=n_bins)
    report: dict[str, object] = {
        "n": int(values.shape[0]),
        "num_classes": 2 if values.dim() == 1 else int(values.shape[1]),
        "binary": values.dim() == 1 or values.shape[1] == 2,
        "input": "logits" if from_logits else "probabilities",
        "n_bins": n_bins,
        "temperature": None,
        "temperature_error": None,
        "before": before,
        "after": None,
    }
    curve = binary_curve(values, labels, from_logits)
    if curve is not None:
        report["pr_curve"] = pr_curve_points(curve)
    logits = as_logits(values, from_logits).double()
    try:
        scaler = TemperatureScaling().fit(logits, labels)
    except (ValueError, RuntimeError) as err:
        report["temperature_error"] = str(err)
        return report
    report["temperature"] = scaler.temperature
    report["after"] = evaluate(scaler(logits), labels, from_logits=True, n_bins=n_bins)
    return report


def pr_curve_figure(curve: PRCurve, best: dict[str, float], title: str) -> Figure:
    """Draw a precision-recall curve with its F1-optimal point (matplotlib imported here).

    Args:
        curve: the :class:`PRCurve`.
        best: the output of :func:`f1_optimal_threshold`.
        title: the figure title.

    Returns:
        A 480 x 420 pixel :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    recall = np.r_[0.0, curve.recall]
    precision = np.r_[curve.precision[0], curve.precision]
    ax.step(
        recall, precision, where="pre", color="#1f5fa8", label=f"AP = {curve.average_precision:.3f}"
    )
    ax.plot(
        best["recall"],
        best["precision"],
        "o",
        color="#e0474c",
        label=f"best F1 = {best['f1']:.3f} at {best['threshold']:.3g}",
    )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision", title=title)
    ax.grid(True, linestyle=":", linewidth=0.5)
    ax.legend(loc="lower left", fontsize="small")
    return fig
