r"""Span-aware label smoothing for tag sequences: the target distribution and its minimum loss.

For a sentence of tags ``y_1 ... y_T`` over ``K`` tags and smoothing ``s`` in ``[0, 1/2]``,
token ``i`` has a left neighbour ``L`` (the tag of the nearest non-ignored token before it)
and a right neighbour ``R`` (after it); a side without one (the sentence end, or only padding
and ignored positions up to the end) has no neighbour. A neighbour *differs* when its tag is
not ``y_i``. With ``m_i`` the number of differing neighbours (0, 1 or 2):

.. math::

    P_i(k) =
    \begin{cases}
    (1 - s)\,[k = y_i] + \dfrac{s}{K - 1}\,[k \ne y_i] & m_i = 0
        \quad\text{(inside a span or a run of O: "others" smoothing)}\\[1ex]
    (1 - s)\,[k = y_i] + \dfrac{s}{m_i}\big([L \ne y_i][k = L] + [R \ne y_i][k = R]\big)
        & m_i \ge 1 \quad\text{(on a boundary)}
    \end{cases}

so a boundary token gives ``s`` to its one differing neighbour's tag, or ``s/2`` to each of
two (``s`` to one tag when both neighbours carry it). Ignored positions (``ignore_index``)
get an all-zero row and never count as neighbours. With BIO tags the ``B-`` token of a longer
span differs from its ``I-`` successor, so it gives mass to ``I-TYPE`` (and to the ``O``
before it): the tags the token would carry if the span boundary moved by one token.

The minimum of the cross-entropy ``-sum_k P_i(k) log p(k)`` over ``p`` is the entropy of
``P_i`` (with ``0 log 0 = 0``):

.. math::

    H_0 = -(1-s)\log(1-s) - s\log\frac{s}{K-1}, \quad
    H_1 = -(1-s)\log(1-s) - s\log s, \quad
    H_2 = -(1-s)\log(1-s) - s\log\frac{s}{2},

``H_0`` inside, ``H_1`` for one differing neighbour (or two with the same tag), ``H_2`` for
two with different tags.

Example:
    >>> import torch
    >>> tags = torch.tensor([[0, 1, 2, 0, 0, -100]])   # O B-PER I-PER O O <pad>
    >>> p = span_smoothed_targets(tags, 3, 0.2, dtype=torch.float64)
    >>> [round(v, 6) for v in p[0, 1].tolist()]        # B-PER: s/2 to O and to I-PER
    [0.1, 0.8, 0.1]
    >>> [round(v, 6) for v in p[0, 4].tolist()]        # O inside a run of O: s/(K-1) each
    [0.8, 0.1, 0.1]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossent.core.checks import check_real, fail

#: The largest smoothing: beyond it a boundary token's neighbour tag outweighs its own.
MAX_SPAN_SMOOTHING = 0.5


def _check(tags: object, num_classes: int, label_smoothing: object, ignore_index: int) -> float:
    if not isinstance(tags, Tensor):
        raise TypeError(f"Expected `tags` to be a torch.Tensor, but got {type(tags).__name__}")
    if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
        raise TypeError(
            "Expected `tags` to be integer tag ids (smoothing='span' needs class indices, "
            f"not probabilities), but got {tags.dtype}"
        )
    if tags.dim() != 2:
        raise fail(
            "tags",
            "to have shape (B, T), one sequence per row (smoothing='span' needs a sequence: "
            "per-sample targets have no neighbours)",
            tags,
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise fail("num_classes", "an int >= 2", num_classes)
    bad = (tags != ignore_index) & ((tags < 0) | (tags >= num_classes))
    if bool(bad.any()):
        raise fail("tags", f"tag ids in [0, {num_classes}) or {ignore_index}", int(tags[bad][0]))
    return check_real("label_smoothing", label_smoothing, low=0.0, high=MAX_SPAN_SMOOTHING)


def span_neighbours(tags: Tensor, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """The tags of each token's nearest non-ignored neighbours, left and right.

    Args:
        tags: ``(B, T)`` integer tag ids, ``ignore_index`` at ignored positions.
        ignore_index: the value of ignored positions.

    Returns:
        ``(left, right)``, both ``(B, T)`` int64: the neighbour's tag id, or -1 where the
        token has no neighbour on that side (and at ignored positions).

    Example:
        >>> span_neighbours(torch.tensor([[3, -100, 4, 5]]))
        (tensor([[-1, -1,  3,  4]]), tensor([[ 4, -1,  5, -1]]))
    """
    tags = tags.long()
    valid = tags != ignore_index
    t = tags.shape[1]
    position = torch.arange(t, device=tags.device).expand_as(tags)
    # Nearest valid position before i: running max of valid positions, shifted by one.
    before = torch.where(valid, position, torch.full_like(position, -1)).cummax(dim=1).values
    before = torch.cat([torch.full_like(before[:, :1], -1), before[:, :-1]], dim=1)
    after = torch.where(valid, position, torch.full_like(position, t))
    after = after.flip(1).cummin(dim=1).values.flip(1)
    after = torch.cat([after[:, 1:], torch.full_like(after[:, :1], t)], dim=1)
    padded = torch.cat([tags, torch.full_like(tags[:, :1], -1)], dim=1)  # index t -> -1
    left = torch.where(before >= 0, padded.gather(1, before.clamp(min=0)), -1)
    right = padded.gather(1, after)
    none = torch.full_like(left, -1)
    return torch.where(valid, left, none), torch.where(valid, right, none)


def span_smoothed_targets(
    tags: Tensor,
    num_classes: int,
    label_smoothing: float,
    *,
    ignore_index: int = -100,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The span-smoothed target distribution of ``(B, T)`` tags (formula: module doc).

    Args:
        tags: ``(B, T)`` integer tag ids in ``[0, K)``, ``ignore_index`` at ignored positions.
        num_classes: ``K >= 2``.
        label_smoothing: ``s`` in ``[0, 1/2]``.
        ignore_index: the value of ignored (padded) positions; default -100.
        dtype: floating dtype of the result.

    Returns:
        ``(B, T, K)``: each row sums to 1, ignored positions are all 0.

    Raises:
        TypeError: ``tags`` is not an integer tensor.
        ValueError: ``tags`` is not ``(B, T)`` (per-sample targets are refused), a tag id is
            outside ``[0, K)``, or ``s`` is outside ``[0, 1/2]``.
    """
    s = _check(tags, num_classes, label_smoothing, ignore_index)
    tags = tags.long()
    valid = tags != ignore_index
    left, right = span_neighbours(tags, ignore_index)
    own = torch.where(valid, tags, torch.zeros_like(tags))
    k = num_classes

    def onehot(index: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(index.clamp(min=0), k).to(dtype)

    differs_left = (left >= 0) & (left != tags)
    differs_right = (right >= 0) & (right != tags)
    count = (differs_left.to(dtype) + differs_right.to(dtype)).unsqueeze(-1)
    target = onehot(own)
    boundary = differs_left.unsqueeze(-1) * onehot(left) + differs_right.unsqueeze(-1) * onehot(
        right
    )
    boundary = (1 - s) * target + s * boundary / count.clamp(min=1)
    inside = (1 - s) * target + s / (k - 1) * (1 - target)
    p = torch.where(count > 0, boundary, inside)
    return p * valid.unsqueeze(-1).to(dtype)


def span_min_achievable_loss(
    tags: Tensor,
    num_classes: int,
    label_smoothing: float,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """The smallest cross-entropy reachable against span-smoothed targets: their entropy.

    Per token it is ``H_0``, ``H_1`` or ``H_2`` of the module doc; float64.

    Args:
        tags: ``(B, T)`` integer tag ids, ``ignore_index`` at ignored positions.
        num_classes: ``K >= 2``.
        label_smoothing: ``s`` in ``[0, 1/2]``.
        ignore_index: the value of ignored positions; default -100.
        reduction: ``"mean"`` over the non-ignored tokens (0 when there are none), ``"sum"``,
            or ``"none"`` for ``(B, T)`` (0 at ignored positions).

    Example:
        >>> tags = torch.tensor([[0, 1, 0]])
        >>> float(span_min_achievable_loss(tags, 3, 0.0))
        0.0
    """
    if reduction not in ("mean", "sum", "none"):
        raise fail("reduction", "one of 'mean', 'sum', 'none'", reduction)
    p = span_smoothed_targets(
        tags, num_classes, label_smoothing, ignore_index=ignore_index, dtype=torch.float64
    )
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)
    if reduction == "none":
        return entropy
    if reduction == "sum":
        return entropy.sum()
    count = int((tags != ignore_index).sum())
    return entropy.sum() / count if count else entropy.sum()


def span_entropies(num_classes: int, label_smoothing: float) -> tuple[float, float, float]:
    """``(H_0, H_1, H_2)``: the per-token minimum cross-entropy of the three cases.

    Inside a span or a run of O, next to one differing tag, between two different tags
    (module doc).

    Example:
        >>> [round(h, 4) for h in span_entropies(9, 0.1)]
        [0.533, 0.3251, 0.3944]
    """

    def xlogx(v: float) -> float:
        return v * math.log(v) if v > 0 else 0.0

    s = check_real("label_smoothing", label_smoothing, low=0.0, high=MAX_SPAN_SMOOTHING)
    own = -xlogx(1 - s)
    return (
        own - (num_classes - 1) * xlogx(s / (num_classes - 1)),
        own - xlogx(s),
        own - 2 * xlogx(s / 2),
    )
