"""Synthetic label noise: symmetric, uniform and asymmetric (class-dependent) flips.

Papers name these kinds differently, so compare definitions, not names:

* ``"symmetric"`` here: exactly ``round(rate * N)`` labels, chosen at random, each moved to
  a uniformly chosen *other* class; the flip rate is exactly ``rate``. The official code of
  Wang et al. (2019, symmetric cross-entropy) flips an exact count of labels (in equal
  shares per class) to another class; the Co-teaching code (Han et al., 2018) draws each
  label from the transition matrix with ``1 - rate`` on the diagonal and ``rate / (K-1)``
  elsewhere (the same matrix in expectation, a random count).
* ``"uniform"``: each label, independently with probability ``rate``, is replaced by a class
  drawn uniformly from all ``K`` classes (possibly its own), so the expected flip rate is
  ``rate * (K-1) / K``. This is the "partially corrupted labels" setting of Zhang et al.
  (2017): "independently with probability p, the label of each image is corrupted as a
  uniform random class".
* ``"asymmetric"``: exactly ``round(rate * N_c)`` labels of each class ``c`` in ``mapping``
  (``N_c`` of them), chosen at random, become ``mapping[c]``; other classes are untouched.
  The default mapping ``c -> (c + 1) % K`` is the "pair flipping" of Han et al. (2018);
  :data:`CIFAR10_ASYMMETRIC_MAPPING` (truck -> automobile, bird -> airplane, deer -> horse,
  cat <-> dog) is the one of Patrini et al. (2017). The exact count per class is what the
  official code of Wang et al. (2019) does; Han et al. and Patrini et al. draw each label
  from the transition matrix (the same matrix in expectation, a random count). With an
  exact count, a rate below 0.5 always leaves the true label the majority of its class.

Every function draws from its own ``torch.Generator`` seeded by ``seed``: results are
reproducible and the global RNG state is neither used nor changed.
"""

from __future__ import annotations

import numpy as np
import torch

from crossent.core.checks import check_choice, check_real, fail
from crossent.data.base import as_labels, check_int

NOISE_KINDS = ("symmetric", "uniform", "asymmetric")

#: CIFAR-10 class ids: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
#: 7 horse, 8 ship, 9 truck. Truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog
#: (Patrini et al., 2017).
CIFAR10_ASYMMETRIC_MAPPING: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

_NAMED_MAPPINGS = {"cifar10": (CIFAR10_ASYMMETRIC_MAPPING, 10)}


def _resolve_mapping(mapping: dict[int, int] | str | None, num_classes: int) -> dict[int, int]:
    if mapping is None:
        return {c: (c + 1) % num_classes for c in range(num_classes)}
    if isinstance(mapping, str):
        check_choice("mapping", mapping, tuple(_NAMED_MAPPINGS))
        table, classes = _NAMED_MAPPINGS[mapping]
        if num_classes != classes:
            raise fail("num_classes", f"to be {classes} for mapping={mapping!r}", num_classes)
        return dict(table)
    if not isinstance(mapping, dict):
        raise TypeError(f"Expected `mapping` to be a dict, a name or None, but got {mapping!r}")
    for source, target in mapping.items():
        for value in (source, target):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value < num_classes
            ):
                raise fail("mapping", f"to map class ids in [0, {num_classes})", mapping)
    return dict(mapping)


def _check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"Expected `labels` to have an integer dtype, but got {labels.dtype}")
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        first = int(labels[bad].reshape(-1)[0])
        raise fail("labels", f"to be class ids in [0, {num_classes}) or {ignore_index}", first)
    return valid


def _flip(
    labels: torch.Tensor,
    rate: float,
    kind: str,
    num_classes: int,
    generator: torch.Generator,
    mapping: dict[int, int],
) -> torch.Tensor:
    """Noisy copy of the 1-D ``labels`` (all valid class ids)."""
    n = len(labels)
    noisy = labels.clone()
    if kind == "symmetric":
        # Exactly round(rate * n) positions; adding 1..K-1 modulo K gives each other class
        # with probability 1 / (K - 1).
        chosen = torch.randperm(n, generator=generator)[: round(rate * n)]
        shift = torch.randint(1, num_classes, (len(chosen),), generator=generator)
        noisy[chosen] = (labels[chosen] + shift) % num_classes
    elif kind == "uniform":
        hit = torch.rand(n, generator=generator) < rate
        drawn = torch.randint(0, num_classes, (n,), generator=generator)
        noisy[hit] = drawn[hit]
    else:
        # Exactly round(rate * N_c) members of each mapped class c, drawn at random.
        for source, dest in mapping.items():
            members = torch.nonzero(labels == source).flatten()
            count = round(rate * len(members))
            noisy[members[torch.randperm(len(members), generator=generator)[:count]]] = dest
    return noisy


def transition_matrix(
    labels: torch.Tensor, noisy_labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The realised noise transition matrix ``T[i, j] = #(true i, noisy j) / #(true i)``.

    Rows are true classes and sum to 1; a class absent from ``labels`` gets the identity
    row (nothing of it was flipped). Float64, shape ``(K, K)``.

    Example:
        >>> transition_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3)
        tensor([[0.5000, 0.5000, 0.0000],
                [0.0000, 1.0000, 0.0000],
                [0.0000, 0.0000, 1.0000]], dtype=torch.float64)
    """
    pairs = labels.reshape(-1).long() * num_classes + noisy_labels.reshape(-1).long()
    counts = torch.bincount(pairs.cpu(), minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).double()
    totals = counts.sum(dim=1, keepdim=True)
    identity = torch.eye(num_classes, dtype=torch.float64)
    return torch.where(totals > 0, counts / totals.clamp(min=1), identity)


def inject_label_noise(
    labels: torch.Tensor | np.ndarray,
    rate: float,
    kind: str,
    num_classes: int,
    seed: int,
    *,
    mapping: dict[int, int] | str | None = None,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]:
    r"""Corrupt class labels with synthetic noise; return them and the realised transitions.

    With ``N`` labels, ``K`` classes and rate ``r``:

    .. math::

        \text{symmetric:}\ \#\{i: \tilde y_i \ne y_i\} = \mathrm{round}(rN),\
        P(\tilde y = j \mid \text{flipped}, y) = \tfrac{1}{K-1}\ (j \ne y)

        \text{uniform:}\ P(\tilde y = j \mid y) = (1 - r)[j = y] + r / K

        \text{asymmetric:}\ \#\{i: y_i = c, \tilde y_i = m(c)\} = \mathrm{round}(r N_c)\
        \text{for}\ c\ \text{in the mapping}\ m,\ \text{else}\ \tilde y = y

    See the module docstring for which papers use which kind.

    Args:
        labels: integer class ids in ``[0, K)``, a ``torch.Tensor`` or a ``numpy.ndarray`` of
            any shape (e.g. ``(N,)``, or ``(N, T)`` token tags); entries equal to
            ``ignore_index`` are left as they are and not counted in ``N``.
        rate: the noise rate, in ``[0, 1]``; for ``"asymmetric"`` below 0.5 (at 0.5 or more
            the wrong label would be as or more frequent than the true one).
        kind: ``"symmetric"``, ``"uniform"`` or ``"asymmetric"``.
        num_classes: ``K``; ``"symmetric"`` needs ``K >= 2`` (a label needs another class).
        seed: seed of the ``torch.Generator`` that draws the noise (``>= 0``).
        mapping: for ``"asymmetric"`` only: ``{source: target}`` class ids, ``"cifar10"``
            for :data:`CIFAR10_ASYMMETRIC_MAPPING`, or ``None`` (default) for
            ``c -> (c + 1) % K``. Classes not in the mapping are never flipped.
        ignore_index: label value to leave untouched (default -100, as PyTorch).

    Returns:
        ``(noisy, transitions)``: the noisy labels (same shape, dtype and device as
        ``labels``; a new tensor) and the realised ``(K, K)`` float64 transition matrix
        (:func:`transition_matrix`): row ``i`` is the distribution of noisy labels among
        examples of true class ``i``; a class absent from ``labels`` gets an identity row.
        NumPy labels give NumPy arrays for both.

    Example:
        >>> y = torch.arange(10).repeat(10)
        >>> noisy, t = inject_label_noise(y, 0.2, "symmetric", 10, seed=0)
        >>> int((noisy != y).sum()), bool(torch.allclose(t.sum(1), torch.ones(10, dtype=t.dtype)))
        (20, True)

    References:
        Zhang et al., `Understanding deep learning requires rethinking generalization
        <https://arxiv.org/abs/1611.03530>`_, 2017 (uniform).
        Han et al., `Co-teaching: Robust Training of Deep Neural Networks with Extremely
        Noisy Labels <https://arxiv.org/abs/1804.06872>`_, 2018 (pair flipping).
        Patrini et al., `Making Deep Neural Networks Robust to Label Noise: a Loss
        Correction Approach <https://arxiv.org/abs/1609.03683>`_, 2017 (CIFAR-10 mapping).
        Wang et al., `Symmetric Cross Entropy for Robust Learning with Noisy Labels
        <https://arxiv.org/abs/1908.06112>`_, 2019.
    """
    check_choice("kind", kind, NOISE_KINDS)
    num_classes = check_int("num_classes", num_classes, 2 if kind == "symmetric" else 1)
    rate = check_real("rate", rate, low=0.0, high=1.0)
    if kind == "asymmetric" and rate >= 0.5:
        raise fail(
            "rate",
            "< 0.5 for kind='asymmetric' (at 0.5 or more the flipped label would become the "
            "majority of its class)",
            rate,
        )
    seed = check_int("seed", seed, 0)
    if mapping is not None and kind != "asymmetric":
        raise fail("mapping", f"to be None for kind={kind!r} (only 'asymmetric' uses it)", mapping)
    table = _resolve_mapping(mapping, num_classes) if kind == "asymmetric" else {}
    given = labels
    labels, from_numpy = as_labels("labels", labels)
    valid = _check_labels(labels, num_classes, ignore_index)
    generator = torch.Generator().manual_seed(seed)
    flat = labels.reshape(-1).cpu().long()
    keep = valid.reshape(-1).cpu()
    noisy = flat.clone()
    noisy[keep] = _flip(flat[keep], rate, kind, num_classes, generator, table)
    transitions = transition_matrix(flat[keep], noisy[keep], num_classes)
    if from_numpy:
        return noisy.reshape(given.shape).numpy().astype(given.dtype), transitions.numpy()
    return noisy.reshape(labels.shape).to(device=labels.device, dtype=labels.dtype), transitions
