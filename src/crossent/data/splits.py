"""Seeded stratified splits and train-statistics standardisation.

Sizes are exact: ``round(fraction * n)`` examples are held out, shared among the classes in
proportion to their counts (largest-remainder rounding), so every split keeps the class
balance of the whole, and the same ``seed`` gives the same split on every machine.
"""

from __future__ import annotations

import math

import torch

from crossent.core.checks import check_tensor, fail
from crossent.data.base import Dataset, Request, Split, check_int


def _quotas(counts: list[int], size: int) -> list[int]:
    """Share ``size`` among classes in proportion to ``counts`` (largest remainder)."""
    total = sum(counts)
    exact = [size * c / total for c in counts]
    quotas = [math.floor(e) for e in exact]
    # Hand out what flooring left over, largest fractional part first (ties: lower class).
    order = sorted(range(len(counts)), key=lambda i: (quotas[i] - exact[i], i))
    for i in order[: size - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _stratified(
    labels: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    classes, counts = torch.unique(labels, return_counts=True)
    held = []
    for c, quota in zip(classes.tolist(), _quotas(counts.tolist(), size), strict=True):
        members = torch.nonzero(labels == c).flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    held_idx = torch.sort(torch.cat(held)).values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_idx] = False
    return torch.nonzero(keep).flatten(), held_idx


def stratified_split(
    labels: torch.Tensor, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out ``size`` examples, classes in proportion, chosen at random by ``seed``.

    Class ``c`` with ``n_c`` of the ``n`` labels gives ``size * n_c / n`` examples, rounded
    so the quotas sum to ``size`` exactly (largest remainder). Within a class the examples
    are drawn with a ``torch.Generator`` seeded by ``seed`` (the global RNG is untouched).

    Args:
        labels: int64 class ids, shape ``(n,)``.
        size: how many to hold out, ``0 <= size <= n``.
        seed: the random seed, ``>= 0``.

    Returns:
        ``(rest, held)``: sorted indices into ``labels``, disjoint, together ``0..n-1``.

    Example:
        >>> rest, held = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1]), 3, seed=0)
        >>> len(rest), len(held), torch.bincount(torch.tensor([0, 0, 0, 0, 1, 1])[held]).tolist()
        (3, 3, [2, 1])
    """
    check_tensor("labels", labels)
    if labels.dim() != 1:
        raise fail("labels", "to be 1-D (one class id per example)", labels)
    check_int("size", size, 0)
    if size > len(labels):
        raise fail("size", f"<= the number of labels ({len(labels)})", size)
    check_int("seed", seed, 0)
    generator = torch.Generator().manual_seed(seed)
    return _stratified(labels.cpu(), size, generator)


def split_three(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
    test: Split | None = None,
) -> tuple[Split, Split, Split]:
    """Split ``(x, y)`` into train / validation / test, stratified and seeded.

    Without a fixed ``test`` split, ``round(test_fraction * n)`` examples go to test and
    ``round(validation_fraction * n)`` to validation (both fractions of the whole). With a
    fixed (official) ``test`` split, ``test_fraction`` is unused and
    ``round(validation_fraction * n)`` of the given training examples go to validation.
    """
    n = len(y)
    generator = torch.Generator().manual_seed(seed)
    n_test = 0 if test is not None else round(test_fraction * n)
    n_val = round(validation_fraction * n)
    if min(n_val, n - n_val - n_test) < 1 or (test is None and n_test < 1):
        raise ValueError(
            f"Expected enough examples for non-empty train, validation and test splits, "
            f"but got {n} examples (validation_fraction={validation_fraction}, "
            f"test_fraction={test_fraction})"
        )
    if test is None:
        rest, held = _stratified(y, n_test, generator)
        test = Split(x[held], y[held])
        x, y = x[rest], y[rest]
    rest, held = _stratified(y, n_val, generator)
    return Split(x[rest], y[rest]), Split(x[held], y[held]), test


def standardize(train: Split, *others: Split) -> tuple[Split, ...]:
    """Standardise inputs with the training split's mean and standard deviation only.

    Statistics are per feature for ``(n, d)`` inputs and per channel for ``(n, C, ...)``
    inputs (population std), computed on ``train`` alone: validation and test never leak
    into them. A constant feature (std 0) is only centred. Works in the inputs' float32
    without a float64 copy, so CIFAR-sized arrays stay affordable.

    Returns:
        ``train`` followed by ``others``, all standardised with the same statistics.
    """
    dims = [0] if train.x.dim() == 2 else [0, *range(2, train.x.dim())]
    var, mean = torch.var_mean(train.x, dim=dims, keepdim=True, correction=0)
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return tuple(Split((s.x - mean) / std, s.y) for s in (train, *others))


def build_dataset(
    request: Request,
    data: Split,
    class_names: tuple[str, ...],
    kind: str,
    *,
    scale: bool,
    test: Split | None = None,
) -> Dataset:
    """Split ``data`` with :func:`split_three`, optionally :func:`standardize`, and wrap it."""
    train, validation, test = split_three(
        data.x,
        data.y,
        seed=request.seed,
        validation_fraction=request.validation_fraction,
        test_fraction=request.test_fraction,
        test=test,
    )
    if scale:
        train, validation, test = standardize(train, validation, test)
    return Dataset(request.name, train, validation, test, len(class_names), class_names, kind)
