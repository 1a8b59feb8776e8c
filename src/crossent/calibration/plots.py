"""Reliability diagrams and confidence histograms (matplotlib is imported only to draw).

The bin arrays come from :func:`~crossent.calibration.calibration_bins`; these functions only
draw them. Figures are created with :class:`matplotlib.figure.Figure` directly (no ``pyplot``
state, no GUI back end); ``fig.savefig("x.png")`` renders with Agg.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from crossent.calibration import _validation as V
from crossent.calibration.binning import CalibrationBins, calibration_bins
from crossent.core.params import constrained

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_OUTPUT_COLOR = "#1f5fa8"
_GAP_COLOR = "#e0474c"
_PANEL_SIZE = (4.8, 6.0)


def _new_figure(columns: int) -> tuple[Figure, list[Axes], list[Axes]]:
    """A figure with one column per model: reliability panel on top, histogram below."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_PANEL_SIZE[0] * columns, _PANEL_SIZE[1]), dpi=100, layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False, height_ratios=(3, 1), sharex="col")
    return fig, list(axes[0]), list(axes[1])


def _root_figure(ax: Axes) -> Figure:
    """The :class:`~matplotlib.figure.Figure` of ``ax``, also when ``ax`` is in a subfigure."""
    figure = ax.figure
    return getattr(figure, "figure", None) or figure  # a SubFigure's .figure is the root


def _bins(
    probs: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    from_logits: bool,
    validate_args: bool,
) -> CalibrationBins:
    """:func:`calibration_bins` on the CPU (drawing needs NumPy arrays)."""
    bins = calibration_bins(
        probs, labels, n_bins=n_bins, from_logits=from_logits, validate_args=validate_args
    )
    return CalibrationBins(*(array.cpu() for array in bins))


def _averages(bins: CalibrationBins) -> tuple[float, float]:
    """Overall accuracy (fraction of hits) and mean confidence of the bins."""
    filled = bins.counts > 0
    counts = bins.counts[filled].double()
    accuracy = float((bins.accuracy[filled] * counts).sum() / counts.sum())
    confidence = float((bins.confidence[filled] * counts).sum() / counts.sum())
    return accuracy, confidence


def _axis_names(binary: bool) -> tuple[str, str]:
    return (
        ("Predicted probability", "Fraction of positives") if binary else ("Confidence", "Accuracy")
    )


def _draw_reliability(
    ax: Axes, bins: CalibrationBins, binary: bool, title: str | None, *, xlabel: bool = True
) -> None:
    """Accuracy bars ("Output"), gap to the mean confidence ("Gap"), the diagonal, ECE/MCE."""
    edges = bins.edges.numpy()
    widths = edges[1:] - edges[:-1]
    filled = (bins.counts > 0).numpy()
    accuracy = torch.nan_to_num(bins.accuracy).numpy()
    confidence = torch.nan_to_num(bins.confidence).numpy()
    left = edges[:-1]
    output = ax.bar(
        left,
        accuracy,
        width=widths,
        align="edge",
        color=_OUTPUT_COLOR,
        edgecolor="black",
        linewidth=0.6,
    )
    gap = ax.bar(
        left,
        abs(confidence - accuracy) * filled,
        width=widths,
        align="edge",
        bottom=np.minimum(accuracy, confidence),
        color=_GAP_COLOR,
        alpha=0.35,
        edgecolor=_GAP_COLOR,
        hatch="//",
        linewidth=0.6,
    )
    (diagonal,) = ax.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=1.2)
    ece, mce = float(bins.calibration_error("l1")), float(bins.calibration_error("max"))
    (blank,) = ax.plot([], [], linestyle="none")
    ax.legend(
        [output, gap, diagonal, blank, blank],
        [
            "Output",
            "Gap",
            "Perfect calibration",
            f"ECE = {100 * ece:.2f}%",
            f"MCE = {100 * mce:.2f}%",
        ],
        loc="upper left",
        fontsize="small",
        framealpha=0.9,
    )
    x_name, y_name = _axis_names(binary)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=y_name, title=title or "Reliability diagram")
    if xlabel:
        ax.set_xlabel(x_name)
    ax.grid(True, linestyle=":", linewidth=0.5)


def _draw_histogram(ax: Axes, bins: CalibrationBins, binary: bool, title: str | None) -> None:
    """Share of predictions per bin, with the overall accuracy and mean confidence marked."""
    edges = bins.edges.numpy()
    share = (bins.counts.double() / bins.counts.sum()).numpy()
    ax.bar(
        edges[:-1],
        share,
        width=edges[1:] - edges[:-1],
        align="edge",
        color=_OUTPUT_COLOR,
        edgecolor="black",
        linewidth=0.6,
    )
    accuracy, confidence = _averages(bins)
    x_name, y_name = _axis_names(binary)
    ax.axvline(
        accuracy,
        color="black",
        linestyle="--",
        linewidth=1.2,
        label=f"{'Positive rate' if binary else 'Accuracy'} = {accuracy:.3f}",
    )
    ax.axvline(
        confidence,
        color=_GAP_COLOR,
        linestyle="--",
        linewidth=1.2,
        label=f"Avg. {'probability' if binary else 'confidence'} = {confidence:.3f}",
    )
    ax.set(xlim=(0, 1), xlabel=x_name, ylabel="% of samples")
    ax.yaxis.set_major_formatter(lambda value, _: f"{100 * value:.0f}")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="x-small", framealpha=0.9)


@constrained(**V.BINNED)
def reliability_diagram(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 10,
    ax: Axes | None = None,
    title: str | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Figure:
    """Reliability diagram with a confidence histogram below, as in Guo et al. 2017.

    Per uniform ``(lo, hi]`` bin: a bar of the accuracy ("Output"), the gap to the bin's mean
    confidence in a second colour ("Gap"), the diagonal of perfect calibration, and the ECE and
    MCE (of these bins) in the legend; below, the share of predictions per bin with the overall
    accuracy and mean confidence marked. Binary ``(N,)`` inputs show the fraction of positives
    against the predicted probability. The arrays come from
    :func:`~crossent.calibration.calibration_bins`.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities (logits with
            ``from_logits=True``).
        labels: ``(N,)`` integer class indices.
        n_bins: number of uniform bins (default 10).
        ax: draw only the reliability panel into this axes (no histogram); default ``None``
            makes a new 480 x 600 pixel figure with both panels.
        title: title of the reliability panel (default "Reliability diagram").
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The :class:`matplotlib.figure.Figure` drawn into.

    Example:
        >>> probs = torch.softmax(3 * torch.randn(1000, 5), dim=1)
        >>> fig = reliability_diagram(probs, torch.randint(0, 5, (1000,)))
        >>> fig.savefig("reliability.png")  # doctest: +SKIP

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017 (Figure 1).
    """
    bins = _bins(probs, labels, n_bins, from_logits, validate_args)
    binary = probs.dim() == 1
    if ax is not None:
        _draw_reliability(ax, bins, binary, title)
        return _root_figure(ax)
    fig, top, bottom = _new_figure(1)
    _draw_reliability(top[0], bins, binary, title, xlabel=False)
    _draw_histogram(bottom[0], bins, binary, None)
    return fig


@constrained(**V.BINNED)
def confidence_histogram(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 10,
    ax: Axes | None = None,
    title: str | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Figure:
    """Histogram of confidences over uniform bins, with accuracy and mean confidence marked.

    A model whose confidence line sits right of its accuracy line is over-confident
    (Guo et al. 2017, Figure 1, top row).

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        n_bins: number of uniform bins (default 10).
        ax: axes to draw into; default ``None`` makes a new 480 x 300 pixel figure.
        title: panel title (default "Confidence histogram").
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The :class:`matplotlib.figure.Figure` drawn into.

    Example:
        >>> probs = torch.softmax(3 * torch.randn(1000, 5), dim=1)
        >>> fig = confidence_histogram(probs, torch.randint(0, 5, (1000,)))
    """
    bins = _bins(probs, labels, n_bins, from_logits, validate_args)
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(_PANEL_SIZE[0], _PANEL_SIZE[1] / 2), dpi=100, layout="constrained")
        ax = fig.add_subplot()
    _draw_histogram(ax, bins, probs.dim() == 1, title or "Confidence histogram")
    return _root_figure(ax)


@constrained(**V.BINNED)
def reliability_diagrams(
    predictions: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    n_bins: int = 10,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Figure:
    """Reliability diagrams of several models side by side, one column each.

    Each column is a :func:`reliability_diagram` (titled with the model's name) over its
    confidence histogram, with shared axes limits so the models compare at a glance.

    Args:
        predictions: model name -> ``(probs, labels)``, drawn left to right in that order.
        n_bins: number of uniform bins (default 10).
        from_logits: the predictions are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        A :class:`matplotlib.figure.Figure` 480 pixels wide per model and 600 high.

    Example:
        >>> z, y = 3 * torch.randn(1000, 5), torch.randint(0, 5, (1000,))
        >>> fig = reliability_diagrams({"raw": (z, y), "T = 3": (z / 3, y)}, from_logits=True)
    """
    if not isinstance(predictions, Mapping) or not predictions:
        raise TypeError("Expected `predictions` to be a non-empty mapping name -> (probs, labels)")
    for name, pair in predictions.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"Expected `predictions[{name!r}]` to be a (probs, labels) pair, but got "
                f"{type(pair).__name__}"
            )
    fig, top, bottom = _new_figure(len(predictions))
    for (name, (probs, labels)), upper, lower in zip(predictions.items(), top, bottom, strict=True):
        bins = _bins(probs, labels, n_bins, from_logits, validate_args)
        _draw_reliability(upper, bins, probs.dim() == 1, str(name), xlabel=False)
        _draw_histogram(lower, bins, probs.dim() == 1, None)
    return fig
