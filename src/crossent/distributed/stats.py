r"""Row statistics of a chunk of logits over the whole vocabulary: the log-sum-exp.

Each rank holds the columns ``[a, b)`` of a chunk ``z`` ``(R, K)``. It computes its local
``lse_r = log sum_{k local} e^{z_k}`` and its local softmax ``q^r`` (PyTorch's fused kernels,
one pass each); the group then needs ``lse = log sum_r e^{lse_r}``: an all-reduce MAX of
``lse_r`` gives the shift ``M``, an all-reduce SUM of ``e^{lse_r - M}`` the sum ``d``, and
``lse = M + log d``. The probabilities over the whole vocabulary are the local ones rescaled,
``q_j = q^r_j e^{lse_r - lse}``: one ``exp`` per logit, as in the engine, and the
log-probabilities ``s = (z - M) - log d``. A rank whose columns of a row are all ``-inf``
has ``lse_r = -inf`` and contributes 0; a row masked on every rank gets ``lse = -inf`` as in
the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.distributed.collectives import all_reduce
from crossent.distributed.shard import Shard
from crossent.engine.multiclass import CHUNK_ELEMENTS


def chunk_rows(n: int, shard: Shard) -> int:
    """Rows per chunk of ``n`` rows: ~``CHUNK_ELEMENTS`` logits on the widest rank.

    Balanced so that the last chunk is not a sliver; the same on every rank (the collectives
    match).
    """
    rows = max(1, CHUNK_ELEMENTS // max(1, shard.max_width))
    chunks = -(-n // rows) if n else 1
    return max(1, -(-n // chunks))


@dataclass
class GlobalLSE:
    """A chunk's log-sum-exp over the whole vocabulary, and this rank's local softmax."""

    q_local: Tensor  # (R, K_local) softmax over the local columns (0 where lse_local = -inf)
    lse_local: Tensor  # (R,) log-sum-exp over the local columns, -inf where none is finite
    m_safe: Tensor  # (R,) the largest lse_local over the group, 0 for a fully masked row
    log_d: Tensor  # (R,) log sum_r exp(lse_r - M) (0 for a fully masked row)
    lse: Tensor  # (R,) -inf for a fully masked row
    lse_safe: Tensor  # (R,) 0 for a fully masked row

    def log_probs(self, x: Tensor) -> Tensor:
        """``s = (z - M) - log d``, exact to rounding for large logits (a new tensor)."""
        return (x - self.m_safe.unsqueeze(1)) - self.log_d.unsqueeze(1)

    def probs(self, row_factor: Tensor | None = None) -> Tensor:
        """``q`` times ``row_factor`` (per row), in place of the local softmax."""
        factor = torch.exp(self.lse_local - self.lse_safe)
        if row_factor is not None:
            factor = factor * row_factor
        return self.q_local.mul_(factor.unsqueeze(1))


def local_softmax(x: Tensor, out: Tensor | None) -> tuple[Tensor, Tensor]:
    """The local columns' softmax ``q^r`` (into ``out``, which may be ``x``) and ``lse_r``.

    PyTorch's fused ``log_softmax`` gives ``s^r = z - lse_r`` exactly, so
    ``lse_r = z_0 - s^r_0`` (first column) and ``q^r = exp(s^r)`` in place: two passes over
    the chunk (PyTorch's ``logsumexp`` alone costs several). Rows whose first logit is not
    finite (a masked class) take ``logsumexp`` of a copy; rows without a finite local logit
    get ``lse_r = -inf`` and ``q^r = 0``.
    """
    r, width = x.shape
    if width == 0:
        return x.new_empty((r, 0)), x.new_full((r,), -math.inf)
    z0 = x[:, 0].clone()  # before `out` (maybe x) is overwritten
    odd = ~torch.isfinite(z0)
    rows = odd.nonzero()[:, 0] if bool(odd.any()) else None
    exact = None if rows is None else torch.logsumexp(x.index_select(0, rows), dim=1)
    s = torch.log_softmax(x, dim=1, out=out) if out is not None else torch.log_softmax(x, dim=1)
    lse_local = z0 - s[:, 0]
    q_local = s.exp_()
    if rows is not None:
        lse_local.index_copy_(0, rows, exact)
        empty = rows[torch.isneginf(exact)]
        q_local.index_fill_(0, empty, 0.0)
    return q_local, lse_local


def global_lse(
    x: Tensor, shard: Shard, out: Tensor | None, extra: tuple[Tensor, ...] = ()
) -> tuple[GlobalLSE, Tensor]:
    """The statistics of a chunk: an all-reduce MAX of ``R`` floats, a SUM of ``R`` floats.

    ``extra`` are further ``(R,)`` rows summed over the group in the same all-reduce (taken
    from ``x`` before: ``out`` may be ``x``). Returns the statistics and the summed extras
    ``(len(extra), R)``.
    """
    q_local, lse_local = local_softmax(x, out)
    m = all_reduce(lse_local.clone(), "max", shard.group)
    m_safe = torch.where(torch.isneginf(m), 0.0, m)
    local = torch.stack([torch.exp(lse_local - m_safe), *extra])
    summed = all_reduce(local, "sum", shard.group)
    d = summed[0]
    empty = d == 0
    log_d = torch.log(torch.where(empty, 1.0, d))
    lse_safe = m_safe + log_d
    lse = torch.where(empty, -math.inf, lse_safe)
    return GlobalLSE(q_local, lse_local, m_safe, log_d, lse, lse_safe), summed[1:]


def global_log_softmax(x: Tensor, shard: Shard) -> Tensor:
    """``log_softmax`` over the whole vocabulary of this rank's columns ``x`` ``(N, K_local)``.

    ``(z - M) - log sum_k e^{z_k - M}`` as the engine forms ``s``, chunk by chunk (two
    all-reduces of ``R`` floats per chunk); computed without autograd (a teacher's logits).
    """
    n = x.shape[0]
    out = torch.empty_like(x)
    rows = chunk_rows(n, shard)
    with torch.no_grad():
        for r0 in range(0, n, rows):
            c = x[r0 : r0 + rows]
            stats, _ = global_lse(c, shard, None)
            out[r0 : r0 + rows] = stats.log_probs(c)
    return out
