"""Per-bin sufficient statistics of calibration: one chunked pass, memory independent of N.

Every calibration error in :mod:`crossent.calibration` is a function of three numbers per bin:
the number of predictions ``n_b``, the sum of their confidences ``S_b`` and the number of hits
``A_b`` (correct top-label predictions, or positives for binary ``(N,)`` inputs). This module
computes them, and :func:`calibration_bins` hands them to users and to the reliability diagrams.

Uniform bins are ``(lo, hi]`` over ``[0, 1]`` (Guo et al. 2017; scikit-learn's
``calibration_curve``), with a confidence of 0 in the first bin and 1.0 in the last. The edges
are those of ``numpy.linspace(0, 1, B + 1)`` and every comparison is exact, so a confidence
is binned as scikit-learn bins it (0.1 in float64 is the edge and stays in the lower bin; the
float32 number nearest 0.1 lies above it and goes up). Quantile bins sort the confidences and
split them into ``B`` contiguous groups whose sizes differ by at most one, the larger groups
first (as ``numpy.array_split``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from crossent.calibration import _validation as V
from crossent.core.params import constrained

#: Rows per chunk. Top-label passes keep about 28 bytes of temporaries per row (torchmetrics:
#: about 29 per row of the whole input), so chunks of at most ``CHUNK_ROWS`` rows and
#: ``CHUNK_ELEMENTS`` input elements bound them near 90 MiB; classwise passes keep about 30
#: bytes per element, bounded by ``CLASSWISE_ELEMENTS``. Chunks are large because each costs a
#: dozen tensor operations, and each operation a hand-off between threads, which is slow when
#: other processes share the cores (20-40 ms per hand-off on a busy 2-core machine).
CHUNK_ROWS = 1 << 22
CHUNK_ELEMENTS = 1 << 25
CLASSWISE_ELEMENTS = 1 << 21


def chunk_rows(probs: torch.Tensor, per_element: bool) -> int:
    """Rows per chunk for ``probs``: fewer when the temporaries are per element (classwise)."""
    width = probs.shape[1] if probs.dim() == 2 else 1
    if per_element:
        return max(1, CLASSWISE_ELEMENTS // width)
    return max(1, min(CHUNK_ROWS, CHUNK_ELEMENTS // width))


class Batch:
    """One chunk of predictions, converted to probabilities and checked.

    Attributes:
        probs: ``(R, K)`` or ``(R,)`` probabilities (float32 or float64).
        labels: ``(R,)`` labels.
        logits: the logits the probabilities came from, or ``None``.
        lse: ``logsumexp`` of ``(R, K)`` logits per row, or ``None``.
        eps: where ``p_y`` is clipped for the NLL: the machine epsilon of the caller's dtype
            (half-precision inputs are upcast, but clip at their own epsilon).
    """

    def __init__(
        self,
        probs: torch.Tensor,
        labels: torch.Tensor,
        logits: torch.Tensor | None = None,
        lse: torch.Tensor | None = None,
        eps: float | None = None,
    ) -> None:
        self.probs, self.labels, self.logits, self.lse = probs, labels, logits, lse
        self.eps = torch.finfo(probs.dtype).eps if eps is None else eps

    @cached_property
    def top_label(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Confidence and hit per row: top-label for ``(R, K)``, positive class for ``(R,)``."""
        if self.probs.dim() == 1:
            return self.probs, self.labels == 1
        conf, pred = self.probs.max(dim=1)
        return conf, pred == self.labels

    def classwise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class confidences and hits, ``(R, K)`` (binary ``(R,)`` becomes two columns)."""
        probs = self.probs
        if probs.dim() == 1:
            probs = torch.stack((1 - probs, probs), dim=1)
        classes = torch.arange(probs.shape[1], device=probs.device)
        return probs, self.labels.unsqueeze(1) == classes

    def correct(self) -> torch.Tensor:
        """Whether the prediction (argmax; ``p > 0.5`` for ``(R,)``) equals the label."""
        if self.probs.dim() == 1:
            return (self.probs > 0.5) == (self.labels == 1)
        return self.top_label[1]

    @cached_property
    def prob_true(self) -> torch.Tensor:
        """``p_y`` per row (``p`` for a positive and ``1 - p`` for a negative ``(R,)`` row)."""
        if self.probs.dim() == 1:
            return torch.where(self.labels == 1, self.probs, 1 - self.probs)
        return self.probs.gather(1, self.labels.long().unsqueeze(1)).squeeze(1)

    def nll_sum(self) -> torch.Tensor:
        """``-sum_i log p_y`` in float64 (exact from logits; from probs ``max(p_y, eps)``)."""
        if self.logits is not None and self.lse is not None:
            # log softmax(z)_y = z_y - logsumexp(z)
            z_y = self.logits.gather(1, self.labels.long().unsqueeze(1)).squeeze(1)
            return (self.lse - z_y).sum(dtype=torch.float64)
        if self.logits is not None:
            # log sigmoid(z) for y = 1, log(1 - sigmoid(z)) = log sigmoid(-z) for y = 0
            signed = torch.where(self.labels == 1, self.logits, -self.logits)
            return -F.logsigmoid(signed).sum(dtype=torch.float64)
        return -self.prob_true.clamp_min(self.eps).log_().sum(dtype=torch.float64)

    def brier_sum(self) -> torch.Tensor:
        """``sum_i sum_k (p_ik - y_ik)^2`` in float64 (``sum_i (p_i - y_i)^2`` for ``(R,)``).

        The differences are formed in the input precision (``p_y - 1`` is exact for
        ``p_y >= 1/2``), so a confident row keeps its small score; a row's squares are summed
        in that precision (all terms are non-negative), the rows in float64. Expanding the
        square instead (``sum_k p_k^2 - 2 p_y + 1``) cancels to 0 for ``p_y`` near 1.
        """
        if self.probs.dim() == 1:
            return (self.probs - self.labels).square_().sum(dtype=torch.float64)
        diff = self.probs.clone()  # one chunk-sized temporary
        diff.scatter_(1, self.labels.long().unsqueeze(1), (self.prob_true - 1).unsqueeze(1))
        return torch.einsum("ik,ik->i", diff, diff).sum(dtype=torch.float64)


def iter_batches(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    from_logits: bool,
    check: bool,
    num_classes: int,
    per_element: bool = False,
) -> Iterator[Batch]:
    """Yield checked probability chunks of ``(probs, labels)``, converting logits on the way.

    ``per_element`` asks for chunks sized for temporaries of the chunk's shape (classwise).
    """
    rows = chunk_rows(probs, per_element)
    if from_logits and check:
        V.warn_if_probabilities(probs[:rows])
    for start in range(0, probs.shape[0], rows):
        x = probs[start : start + rows]
        y = labels[start : start + rows]
        if check:
            V.check_labels_chunk(y, num_classes)
        if check and not from_logits:
            V.check_probs_chunk(x)  # before upcasting: the row-sum tolerance follows the dtype
        eps = torch.finfo(x.dtype).eps
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if not from_logits:
            yield Batch(x, y, None, None, eps)
        elif x.dim() == 1:
            if check and bool(torch.isnan(x).any()):
                raise V.bad("probs", "(logits, from_logits=True) not to contain NaN", "NaN")
            yield Batch(torch.sigmoid(x), y, x, None)
        else:
            lse = torch.logsumexp(x, dim=1)
            if check:
                V.check_finite_lse(lse)
            # torch.softmax, not exp(x - lse): the same float32 confidences (and bins) as a
            # caller who applies softmax first
            yield Batch(torch.softmax(x, dim=1), y, x, lse)


def uniform_edges(n_bins: int) -> torch.Tensor:
    """The float64 edges of uniform bins: ``numpy.linspace(0, 1, B + 1)``, as scikit-learn's."""
    return torch.from_numpy(np.linspace(0.0, 1.0, n_bins + 1))


@lru_cache(maxsize=64)
def _search_edges(n_bins: int) -> torch.Tensor:
    """:func:`uniform_edges` with the ends set to -inf and inf (every value has a bin)."""
    edges = uniform_edges(n_bins)
    edges[0], edges[-1] = -math.inf, math.inf
    return edges


@lru_cache(maxsize=64)
def _edge_below_dyadic(n_bins: int) -> bool:
    """Whether a float64 edge ``e_k`` lies below ``k / B`` where ``k / B`` is a binary fraction.

    A binary fraction ``k / B`` (``B / gcd(k, B)`` a power of two) can be a float32 or half
    confidence; ``ceil(c * B) - 1`` puts it below the edge, scikit-learn above ``e_k`` (for
    example ``B = 98``: ``numpy.linspace(0, 1, 99)[49]`` is ``0.49999999999999994``).
    """
    k = np.arange(n_bins + 1)
    reduced = n_bins // np.gcd(k, n_bins)
    dyadic = (reduced & (reduced - 1)) == 0
    return bool(np.any(dyadic & (uniform_edges(n_bins).numpy() < k / n_bins)))


def uniform_key(conf: torch.Tensor, hits: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Key ``bin + n_bins * hit`` of each confidence for ``(lo, hi]`` bins over ``[0, 1]``.

    The bins are exactly scikit-learn's: ``c`` is in bin ``b`` when ``e_b < c <= e_{b+1}``
    for the float64 edges ``e = numpy.linspace(0, 1, B + 1)``; 0 (and anything below, when the
    content checks are off) is in the first bin, 1.0 (and above) in the last. ``(R, G)`` inputs
    (one group per column) get ``2 * n_bins * g`` added for group ``g``.
    """
    c = conf.double()
    # b = ceil(c * B) - 1. For float32 (and half) c, c * B is exact in float64, and no float32
    # lies strictly between k / B and its float64 edge e_k, so this is the exact bin unless c
    # equals a binary fraction k / B whose edge e_k rounds below it (rare n_bins, e.g. 98).
    key = c.mul(n_bins).sub_(1).ceil_().clamp_(0, n_bins - 1)
    if conf.dtype == torch.float64 or _edge_below_dyadic(n_bins):
        # c * B may round across an integer when c is within an ulp of an edge: compare with
        # the edges of the candidate bin and move by one where needed.
        edges = _search_edges(n_bins).to(c.device)
        index = key.long()
        key -= (c <= edges[index]).to(key.dtype)
        key += (c > edges[index + 1]).to(key.dtype)
    key = key.add_(hits, alpha=n_bins).long()
    if key.dim() == 2:
        key += torch.arange(key.shape[1], device=key.device) * (2 * n_bins)
    return key


def quantile_bin(n: int, n_bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin of each sorted position ``0..n-1`` for equal-count bins, and each bin's end."""
    sizes = torch.full((n_bins,), n // n_bins, dtype=torch.long, device=device)
    sizes[: n % n_bins] += 1
    ends = sizes.cumsum(0)
    positions = torch.arange(n, device=device)
    return torch.bucketize(positions, ends, right=True), ends


def add_counts(stats: torch.Tensor, key: torch.Tensor, conf: torch.Tensor) -> None:
    """Add counts, confidence sums and hit counts into ``stats`` of shape ``(3, G, B)``.

    ``key`` is ``bin + B * hit + 2 * B * g`` for every confidence in ``conf`` (same shape).
    Two ``index_add_`` calls (serial loops, unlike ``bincount``, whose extra min/max passes each
    wait for a second thread) accumulate the counts and the confidence sums in float64.
    """
    groups, n_bins = stats.shape[1], stats.shape[2]
    key = key.reshape(-1)
    weights = conf.reshape(-1).double()
    totals = torch.zeros(2, groups * 2 * n_bins, dtype=torch.float64, device=stats.device)
    totals[0].index_add_(
        0, key, torch.ones((), dtype=torch.float64, device=key.device).expand_as(key)
    )
    totals[1].index_add_(0, key, weights)
    counts, sums = totals.view(2, groups, 2, n_bins).unbind(0)
    stats[0] += counts.sum(dim=1)
    stats[1] += sums.sum(dim=1)
    stats[2] += counts[:, 1]


def binned_stats(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    binning: str,
    classwise: bool,
    from_logits: bool,
    check: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin statistics ``(3, G, B)`` (counts, confidence sums, hits) and edges ``(G, B + 1)``.

    ``G`` is 1 for top-label (or binary positive-class) binning and ``K`` for classwise.
    Inputs must already have passed :func:`~crossent.calibration._validation.check_inputs`.
    """
    num_classes = 2 if probs.dim() == 1 else probs.shape[1]
    groups = num_classes if classwise else 1
    batches = iter_batches(
        probs,
        labels,
        from_logits=from_logits,
        check=check,
        num_classes=num_classes,
        per_element=classwise,
    )
    if binning == "uniform":
        stats = torch.zeros(3, groups, n_bins, dtype=torch.float64, device=probs.device)
        for batch in batches:
            conf, hits = batch.classwise() if classwise else batch.top_label
            add_counts(stats, uniform_key(conf, hits, n_bins), conf)
        return stats, uniform_edges(n_bins).to(probs.device).expand(groups, -1)
    return quantile_stats(*confidences(batches, probs.shape[0], classwise), n_bins)


def confidences(
    batches: Iterator[Batch], n: int, classwise: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, G)`` confidences and boolean hits of the ``n`` rows of ``batches``.

    Top-label (``G = 1``): each row's largest probability and whether it is the label (for
    binary ``(N,)`` inputs the positive-class probability and whether the label is 1);
    classwise (``G = K``): every class's probability and whether it is the label.
    """
    pairs = [batch.classwise() if classwise else batch.top_label for batch in batches]
    conf = torch.cat([c for c, _ in pairs]).reshape(n, -1)
    hits = torch.cat([h for _, h in pairs]).reshape(n, -1)
    return conf, hits


def quantile_stats(
    conf: torch.Tensor, hits: torch.Tensor, n_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics ``(3, G, B)`` and edges ``(G, B + 1)`` of equal-count bins per column.

    ``conf`` and ``hits`` are ``(N, G)`` confidences and hits (one group per column): each
    column is sorted (stably) and split into ``B`` contiguous bins whose sizes differ by at
    most one, the larger first.
    """
    groups = conf.shape[1]
    stats = torch.zeros(3, groups, n_bins, dtype=torch.float64, device=conf.device)
    conf, order = torch.sort(conf, dim=0, stable=True)
    bins, ends = quantile_bin(conf.shape[0], n_bins, conf.device)
    offsets = torch.arange(groups, device=conf.device) * (2 * n_bins)
    key = bins.unsqueeze(1) + hits.gather(0, order) * n_bins + offsets
    add_counts(stats, key, conf)
    last = (ends - 1).clamp_(min=0)
    edges = torch.cat((conf[:1], conf[last]), dim=0).t().double()
    return stats, edges


def calibration_error_from_stats(stats: torch.Tensor, norm: str, debiased: bool) -> torch.Tensor:
    """Calibration error (float64 scalar) from per-bin statistics ``(3, G, B)``.

    Per group, with ``N = sum_b n_b``, ``acc_b = A_b / n_b`` and ``conf_b = S_b / n_b``:
    ``l1 = sum_b |A_b - S_b| / N``, ``l2 = sqrt(sum_b (n_b / N)(acc_b - conf_b)^2)``,
    ``max = max_{n_b > 0} |acc_b - conf_b|``. Groups (classes) combine as
    ``(mean_g ce_g^p)^(1/p)``: the mean for l1, root-mean-square for l2, maximum for max.
    Kumar et al.'s debiased l2 subtracts ``acc_b (1 - acc_b) / (n_b - 1)`` in every bin with
    ``n_b >= 2``, drops bins with fewer, and clips the sum at 0 before the square root.
    """
    counts, conf_sum, hit_sum = stats[0], stats[1], stats[2]
    total = counts.sum(dim=1)
    gap = hit_sum - conf_sum
    nonempty = counts > 0
    safe = counts.clamp(min=1)
    if norm == "l1":
        return (gap.abs().sum(dim=1) / total).mean()
    if norm == "max":
        return torch.where(nonempty, gap.abs() / safe, 0).amax()
    # n_b (acc_b - conf_b)^2 = (A_b - S_b)^2 / n_b
    square = torch.where(nonempty, gap.square() / safe, 0)
    if debiased:
        acc = hit_sum / safe
        variance = acc * (1 - acc) * counts / (counts - 1).clamp(min=1)
        square = torch.where(counts >= 2, square - variance, 0)
    per_group = (square.sum(dim=1) / total).clamp(min=0)
    return per_group.mean().sqrt()


class CalibrationBins(NamedTuple):
    """Per-bin arrays of a reliability diagram (from :func:`calibration_bins`).

    Attributes:
        edges: ``(B + 1,)`` float64 bin edges; uniform bins are ``(edges[b], edges[b + 1]]``.
            For quantile bins, ``edges[0]`` is the smallest confidence and ``edges[b + 1]`` the
            largest confidence in bin ``b``.
        counts: ``(B,)`` int64 number of predictions per bin.
        confidence: ``(B,)`` float64 mean confidence per bin (NaN for an empty bin).
        accuracy: ``(B,)`` float64 fraction of hits per bin (NaN for an empty bin): correct
            top-label predictions for ``(N, K)`` inputs, positives for binary ``(N,)`` inputs.
    """

    edges: torch.Tensor
    counts: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor

    def calibration_error(self, norm: str = "l1") -> torch.Tensor:
        """The calibration error of these bins, as a float64 0-d tensor.

        Several norms of one set of bins cost one pass over the data; each equals
        :func:`~crossent.calibration.expected_calibration_error` with the same bins (top-label).

        Args:
            norm: ``"l1"`` (ECE, default), ``"l2"`` (RMSCE) or ``"max"`` (MCE).

        Returns:
            The calibration error.
        """
        V.NORM.check("norm", norm)
        filled = self.counts > 0
        gap = (self.accuracy - self.confidence)[filled].abs()
        if norm == "max":
            return gap.max()
        weight = self.counts[filled].double() / self.counts.sum()
        if norm == "l1":
            return (weight * gap).sum()
        return (weight * gap.square()).sum().sqrt()


@constrained(**V.BINNED, binning=V.BINNING)
def calibration_bins(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    from_logits: bool = False,
    validate_args: bool = True,
) -> CalibrationBins:
    r"""Per-bin counts, mean confidence and accuracy: the arrays behind a reliability diagram.

    For ``(N, K)`` inputs a row's confidence is its largest probability and it is a hit when
    that class (the first on ties) is the label; for binary ``(N,)`` inputs the confidence is
    the positive-class probability and a hit is a positive label (the convention of
    scikit-learn's ``calibration_curve``). With :math:`B_b` the rows in bin :math:`b`,

    .. math::
        \mathrm{conf}_b = \frac{1}{|B_b|} \sum_{i \in B_b} c_i, \qquad
        \mathrm{acc}_b = \frac{1}{|B_b|} \sum_{i \in B_b} h_i .

    Args:
        probs: ``(N, K)`` probabilities, or ``(N,)`` positive-class probabilities; logits with
            ``from_logits=True``.
        labels: ``(N,)`` integer class indices.
        n_bins: number of bins (default 15).
        binning: ``"uniform"`` (``(lo, hi]`` over ``[0, 1]``, default) or ``"quantile"``
            (equal counts).
        from_logits: apply a softmax (sigmoid for ``(N,)``) first (default ``False``).
        validate_args: run the content checks (finite values, rows summing to 1 within
            1e-3, labels in range); default ``True``.

    Returns:
        :class:`CalibrationBins` with ``edges``, ``counts``, ``confidence`` and ``accuracy``.

    Example:
        >>> probs = torch.tensor([1.0, 1.0, 0.95, 0.95])
        >>> bins = calibration_bins(probs, torch.tensor([1, 0, 1, 1]), n_bins=10)
        >>> bins.counts[-1].item(), bins.accuracy[-1].item(), round(bins.confidence[-1].item(), 6)
        (4, 0.75, 0.975)

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """
    V.check_inputs(probs, labels)
    check = V.content_checks(validate_args)
    stats, edges = binned_stats(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        classwise=False,
        from_logits=from_logits,
        check=check,
    )
    counts, conf_sum, hit_sum = stats[:, 0]
    empty = counts == 0
    confidence = torch.where(empty, torch.nan, conf_sum / counts)
    accuracy = torch.where(empty, torch.nan, hit_sum / counts)
    return CalibrationBins(edges[0].clone(), counts.long(), confidence, accuracy)
