r"""Targets and class weights of a vocabulary-parallel call, seen from one rank.

Class indices are global (``[0, K)``) and the same on every rank; probability targets are
sharded like the logits, ``(N, K_local)``. Per row this rank needs the target's local column
(where it holds it), the row's weight ``w_t c_t`` (class weight times focal's ``alpha``) and
the ``mean``'s denominator ``sum_rows w_t``; per local class the multiplier ``w_k c_k``.

A class-weight vector (``weight``, focal's ``alpha``) may be given **in full**, ``(K,)`` on
every rank, or **as the local slice**, ``(K_local,)``: with full vectors everything is
computed locally; if any rank gives a slice, the per-row ``w_t`` and ``c_t`` come from one
all-reduce of ``(N, 2)`` floats (each rank contributes the rows whose target it holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.core.targets import prepare_targets, smoothing_levels
from crossent.distributed.collectives import all_reduce
from crossent.distributed.shard import Shard

# How a class-weight vector was given, as shared in the layout's facts.
NONE, FULL, SLICE = 0, 1, 2


def vector_mode(name: str, vec: object) -> tuple[Tensor | None, int]:
    """Check a per-class vector locally: ``(vec, length)``, the length -1 for ``None``.

    Its values (finite, >= 0) are checked here; whether its length fits is decided by
    :func:`check_vector_lengths` once every rank's layout is known.
    """
    if vec is None:
        return None, -1
    vec = checks.check_tensor(name, vec)
    if vec.dim() != 1:
        raise checks.fail(name, "to have shape (C,) or (C_local,) (one weight per class)", vec)
    checks.check_class_weight(vec, vec.shape[0], name)
    return vec, vec.shape[0]


def check_vector_lengths(shard: Shard, key: str, name: str) -> int:
    """The mode of a per-class vector over the group: NONE, FULL or SLICE.

    ``key`` names its length in the shared facts (``"weight"``, ``"class_scale"``), ``name``
    is the argument's name for the message (``"weight"``, ``"alpha"``).

    Each rank's vector must be ``(K,)`` (full) or ``(K_local,)`` (its slice), and every rank
    must give one or none. The verdict is the same on every rank (it reads the shared facts).
    """
    lengths = shard.facts[f"{key}_len"]
    widths = shard.facts["width"]
    if all(n < 0 for n in lengths):
        return NONE
    k = shard.num_classes
    bad = [r for r, n in enumerate(lengths) if n not in (k, widths[r])]
    if any(n < 0 for n in lengths) or bad:
        raise ValueError(
            f"Expected `{name}` on every rank (or on none) with shape ({k},) (the full vector) "
            f"or (K_local,) (the rank's slice: widths {list(widths)}), but got lengths "
            f"{[None if n < 0 else n for n in lengths]} (in rank order)"
        )
    full = all(n == k for n in lengths)
    return FULL if full else SLICE


def local_slice(vec: Tensor | None, shard: Shard) -> Tensor | None:
    """This rank's ``(K_local,)`` part of a full or sliced per-class vector."""
    if vec is None:
        return None
    if vec.shape[0] == shard.width:
        return vec
    return vec[shard.start : shard.stop]


@dataclass(frozen=True)
class ShardedTargets:
    """Prepared targets of one call on one rank (rows are the flattened batch, ``N``).

    Attributes:
        index: ``(N,)`` local column of the target where this rank holds it, else 0; ``None``
            for probability targets.
        here: ``(N,)`` bool, the row's (non-ignored) target is held here; ``None`` for
            probabilities.
        probs: ``(N, K_local)`` local probabilities (un-smoothed), or ``None``.
        valid: ``(N,)`` bool, ``False`` where the target is ``ignore_index``.
        elem_weight: ``(N,)`` ``w_t c_t`` (0 where ignored) for class indices, else ``None``.
        denominator: the ``mean``'s divisor (0-dim).
        mult: ``(K_local,)`` local ``w_k c_k``, or ``None`` when neither vector is given.
        mult_total: ``sum_k w_k c_k`` over the whole vocabulary (0-dim; one all-reduce of
            one float per call, for class indices with class vectors), else ``None``.
    """

    index: Tensor | None
    here: Tensor | None
    probs: Tensor | None
    valid: Tensor
    elem_weight: Tensor | None
    denominator: Tensor
    mult: Tensor | None
    mult_total: Tensor | None = None

    def rows(self, span: slice) -> ShardedTargets:
        """The rows ``span`` (the denominator stays the batch's)."""

        def cut(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[span]

        return ShardedTargets(
            cut(self.index),
            cut(self.here),
            cut(self.probs),
            self.valid[span],
            cut(self.elem_weight),
            self.denominator,
            self.mult,
            self.mult_total,
        )

    def chunk_target(
        self, width: int, num_classes: int, eps: float, smoothing: str, dtype: torch.dtype
    ) -> Tensor:
        """This rank's columns of the (smoothed) target distribution ``P``, ``(R, K_local)``."""
        if self.probs is not None:
            p = self.probs.to(dtype)
            return p * (1 - eps) + eps / num_classes if eps > 0 else p
        assert self.index is not None and self.here is not None
        off, on = smoothing_levels(eps, smoothing, num_classes)
        p = torch.full((self.index.shape[0], width), off, dtype=dtype, device=self.index.device)
        if width:
            level = torch.full_like(p[:, :1], on)  # (R, 1); rows not held here keep `off`
            level.masked_fill_(~self.here.unsqueeze(1), off)
            p.scatter_(1, self.index.unsqueeze(1), level)
        return p


def _multiplier(
    shard: Shard, vectors: tuple[Tensor | None, ...], dtype: torch.dtype
) -> Tensor | None:
    mult = None
    for vec in vectors:
        part = local_slice(vec, shard)
        if part is not None:
            part = part.to(dtype)
            mult = part if mult is None else mult * part
    return mult


def index_targets(
    shard: Shard,
    target: Tensor,
    like: Tensor,
    vectors: tuple[Tensor | None, Tensor | None],
    modes: tuple[int, int],
    ignore_index: int,
) -> ShardedTargets:
    """Prepare global class indices ``(N,)`` for this rank.

    ``like`` gives the dtype and device of the logits; ``vectors`` are ``(weight,
    class_scale)`` and ``modes`` how each was given (:func:`check_vector_lengths`).
    """
    n = target.shape[0]
    dtype = compute_dtype(like.dtype)
    full = torch.empty((), dtype=like.dtype, device=like.device).expand(n, shard.num_classes)
    weight, scale = (v if m == FULL else None for v, m in zip(vectors, modes, strict=True))
    prepared = prepare_targets(full, target, weight, scale, ignore_index, 0.0, "uniform")
    index, valid = prepared.index.reshape(n), prepared.valid.reshape(n)
    here = valid & (index >= shard.start) & (index < shard.stop)
    local = torch.where(here, index - shard.start, torch.zeros_like(index))
    elem_weight, denominator = prepared.elem_weight.reshape(n), prepared.denominator
    if SLICE in modes:
        elem_weight, denominator = _sliced_row_weights(shard, vectors, modes, local, here, valid)
    mult = _multiplier(shard, vectors, dtype)
    total = None
    if mult is not None:  # every rank has one or none (the vectors' modes are shared)
        total = all_reduce(mult.sum().reshape(1), "sum", shard.group).reshape(())
    return ShardedTargets(local, here, None, valid, elem_weight, denominator, mult, total)


def _sliced_row_weights(
    shard: Shard,
    vectors: tuple[Tensor | None, Tensor | None],
    modes: tuple[int, int],
    local: Tensor,
    here: Tensor,
    valid: Tensor,
) -> tuple[Tensor, Tensor]:
    """``(w_t c_t, sum_rows w_t)`` when some rank holds only its slice: one all-reduce."""
    parts = [
        None if m == NONE else local_slice(v, shard) for v, m in zip(vectors, modes, strict=True)
    ]
    rows = torch.zeros((local.shape[0], 2), dtype=torch.float64, device=local.device)
    for j, part in enumerate(parts):
        if part is not None and shard.width:
            picked = part.to(device=local.device, dtype=torch.float64)[local]
            rows[:, j] = torch.where(here, picked, torch.zeros_like(picked))
    all_reduce(rows, "sum", shard.group)
    w_t = rows[:, 0] if parts[0] is not None else torch.ones_like(rows[:, 0])
    c_t = rows[:, 1] if parts[1] is not None else torch.ones_like(rows[:, 1])
    w_t = torch.where(valid, w_t, torch.zeros_like(w_t))
    return w_t * c_t, w_t.sum()


def prob_targets(
    shard: Shard, target: Tensor, vectors: tuple[Tensor | None, Tensor | None], like: Tensor
) -> ShardedTargets:
    """Prepare this rank's probabilities ``(N, K_local)`` (the ``mean`` divides by ``N``)."""
    n = target.shape[0]
    valid = torch.ones(n, dtype=torch.bool, device=like.device)
    denominator = torch.tensor(float(n), device=like.device)
    mult = _multiplier(shard, vectors, compute_dtype(like.dtype))
    return ShardedTargets(None, None, target, valid, None, denominator, mult)
