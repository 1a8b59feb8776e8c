"""Deliberately naive numpy references for the calibration tests (loops over bins, float64).

Written from the papers, independent of crossent's code: explicit ``(lo, hi]`` comparisons
instead of ``ceil``, ``numpy.array_split`` of the sorted confidences for equal-mass bins, a
Python loop over classes for classwise errors, Kumar et al.'s per-bin debiasing.
"""

import numpy as np


def top_label(probs, labels):
    """Confidence and correctness of the argmax (first maximum), or the binary convention."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim == 1:
        return probs, (labels == 1).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def uniform_ids(conf, n_bins):
    """Guo et al.'s (lo, hi] bins over [0, 1], 0 in the first bin."""
    ids = np.full(conf.shape, -1)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi)
        if b == 0:
            inside |= conf == 0
        ids[inside] = b
    assert (ids >= 0).all()
    return ids


def equal_mass_ids(conf, n_bins):
    """Sort the confidences and split them into n_bins groups with numpy.array_split."""
    ids = np.empty(conf.shape, dtype=int)
    order = np.argsort(conf, kind="stable")
    for b, members in enumerate(np.array_split(order, n_bins)):
        ids[members] = b
    return ids


def binned_error(conf, hits, ids, n_bins, norm="l1", debiased=False):
    """ECE (l1), RMSCE (l2), MCE (max), or Kumar et al.'s debiased l2, from bin ids."""
    n = conf.size
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        inside = ids == b
        size = inside.sum()
        if size == 0:
            continue
        acc, avg = hits[inside].mean(), conf[inside].mean()
        worst = max(worst, abs(acc - avg))
        if norm == "l1":
            total += size / n * abs(acc - avg)
        elif debiased:
            if size >= 2:
                total += size / n * ((acc - avg) ** 2 - acc * (1 - acc) / (size - 1))
        else:
            total += size / n * (acc - avg) ** 2
    if norm == "max":
        return worst
    if norm == "l2":
        return np.sqrt(max(total, 0.0))
    return total


def ece(probs, labels, n_bins=15, norm="l1", binning="uniform", debiased=False):
    conf, hits = top_label(probs, labels)
    binner = uniform_ids if binning == "uniform" else equal_mass_ids
    return binned_error(conf, hits, binner(conf, n_bins), n_bins, norm, debiased)


def classwise_ece(probs, labels, n_bins=15, norm="l1", binning="uniform", debiased=False):
    """Per-class errors combined as (mean_k ce_k^p)^(1/p) (Kumar et al.'s marginal CE)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    binner = uniform_ids if binning == "uniform" else equal_mass_ids
    errors = []
    for k in range(probs.shape[1]):
        conf, hits = probs[:, k], (labels == k).astype(np.float64)
        errors.append(binned_error(conf, hits, binner(conf, n_bins), n_bins, norm, debiased))
    errors = np.array(errors)
    if norm == "l1":
        return errors.mean()
    if norm == "max":
        return errors.max()
    return np.sqrt(np.mean(errors**2))


def brier(probs, labels):
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim == 1:
        return np.mean((probs - labels) ** 2)
    onehot = np.eye(probs.shape[1])[labels]
    return np.mean(np.sum((probs - onehot) ** 2, axis=1))
