"""Long-tailed subsampling with the exponential profile of Cui et al. (2019)."""

from __future__ import annotations

import math

import numpy as np
import torch

from crossent.core.checks import check_real, fail
from crossent.data.base import as_labels, check_int


def long_tail_counts(counts: list[int], imbalance_factor: float) -> list[int]:
    r"""Per-class sizes of the exponential long-tail profile, capped by what exists.

    .. math::

        n_c = \max\left(1, \left\lfloor n_{\max} \cdot \mathrm{IF}^{-c / (K-1)}
        \right\rfloor\right), \quad c = 0, \dots, K-1

    then ``min(n_c, counts[c])``, with ``n_max = max(counts)``; class 0 keeps the most, class
    ``K-1`` about ``n_max / IF``. ``K = 1`` keeps everything.

    Args:
        counts: available examples per class, in class order.
        imbalance_factor: ``IF = n_0 / n_{K-1}``, ``>= 1`` (1 keeps every example).

    Returns:
        The number of examples to keep per class.

    Example:
        >>> long_tail_counts([100, 100, 100], 100.0)
        [100, 10, 1]
    """
    k = len(counts)
    n_max = max(counts, default=0)
    if k < 2:
        return list(counts)
    return [
        min(count, max(1, math.floor(n_max * imbalance_factor ** (-c / (k - 1)))))
        for c, count in enumerate(counts)
    ]


def long_tail_indices(
    labels: torch.Tensor | np.ndarray, imbalance_factor: float, seed: int
) -> torch.Tensor | np.ndarray:
    r"""Indices of a long-tailed subset: class ``c`` keeps ``n_max * IF^(-c/(K-1))`` examples.

    .. math::

        n_c = \min\left(N_c, \max\left(1, \left\lfloor n_{\max} \cdot
        \mathrm{IF}^{-c / (K-1)} \right\rfloor\right)\right)

    where the ``K`` classes are those present in ``labels`` in increasing id order
    (``c = 0`` is the smallest id present), ``N_c`` is how many examples class ``c`` has and
    ``n_max = max_c N_c``. Which examples are kept is drawn at random with a
    ``torch.Generator`` seeded by ``seed`` (the global RNG is untouched). Apply it to the
    training split only: the test split stays balanced.

    Args:
        labels: integer class ids, shape ``(N,)``: a ``torch.Tensor`` or a ``numpy.ndarray``.
        imbalance_factor: ``IF >= 1``, the ratio of the largest to the smallest class
            (1 keeps every example).
        seed: the random seed, ``>= 0``.

    Returns:
        Sorted int64 indices into ``labels`` (a NumPy array for NumPy labels).

    Example:
        >>> y = torch.arange(3).repeat_interleave(100)
        >>> torch.bincount(y[long_tail_indices(y, 10.0, seed=0)]).tolist()
        [100, 31, 10]

    References:
        Cui et al., `Class-Balanced Loss Based on Effective Number of Samples
        <https://arxiv.org/abs/1901.05555>`_, 2019.
    """
    labels, from_numpy = as_labels("labels", labels)
    if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise fail("labels", "to be a 1-D tensor of integer class ids", labels)
    imbalance_factor = check_real("imbalance_factor", imbalance_factor, low=1.0)
    if math.isinf(imbalance_factor):
        raise fail("imbalance_factor", "to be finite", imbalance_factor)
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    flat = labels.cpu()
    classes, counts = torch.unique(flat, return_counts=True)
    keep = long_tail_counts(counts.tolist(), imbalance_factor)
    chosen = []
    for c, n in zip(classes.tolist(), keep, strict=True):
        members = torch.nonzero(flat == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:n]])
    indices = torch.sort(torch.cat(chosen)).values if chosen else torch.zeros(0, dtype=torch.int64)
    return indices.numpy() if from_numpy else indices.to(labels.device)
