r"""Row statistics of a chunk of logits over the whole vocabulary: maximum and log-sum-exp.

Each rank holds the columns ``[a, b)`` of a chunk ``z`` ``(R, K)``. The row maximum
``M = max_k z_k`` is an all-reduce MAX of each rank's ``m_r``; the sum
``d = sum_k e^{z_k - M}`` an all-reduce SUM of ``d_r e^{m_r - M}`` with
``d_r = sum_{k local} e^{z_k - m_r}``. The exponentials, shifted by the local maximum, are kept
and rescaled once ``lse = M + log d`` is known, ``q_j = e^{z_j - m_r} e^{m_r - lse}``: one
``exp`` per logit, as in the engine. A rank whose columns of a row are all ``-inf`` has
``m_r = -inf`` and contributes 0; a row masked on every rank gets ``lse = -inf`` as in the
engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.distributed.collectives import all_reduce
from crossent.distributed.shard import Shard
from crossent.engine.multiclass import CHUNK_ELEMENTS


def chunk_rows(shard: Shard) -> int:
    """Rows per chunk: ~``CHUNK_ELEMENTS`` logits on the widest rank (the same on every rank)."""
    return max(1, CHUNK_ELEMENTS // max(1, shard.max_width))


@dataclass
class GlobalLSE:
    """A chunk's log-sum-exp over the whole vocabulary, and this rank's exponentials."""

    e: Tensor  # (R, K_local) exp(z - m_r), m_r the local row maximum (0 if the row is empty)
    m_local: Tensor  # (R,) local row maximum, -inf where no local logit is finite
    m_safe: Tensor  # (R,) global row maximum, 0 for a fully masked row
    log_d: Tensor  # (R,) log sum_k exp(z_k - M) (0 for a fully masked row)
    lse: Tensor  # (R,) -inf for a fully masked row
    lse_safe: Tensor  # (R,) 0 for a fully masked row

    def log_probs(self, x: Tensor) -> Tensor:
        """``s = (z - M) - log d``, exact to rounding for large logits (a new tensor)."""
        return (x - self.m_safe.unsqueeze(1)) - self.log_d.unsqueeze(1)

    def probs(self) -> Tensor:
        """``q = e * exp(m_r - lse)``, in place of ``e``."""
        return self.e.mul_(torch.exp(self.m_local - self.lse_safe).unsqueeze(1))


def global_max(x: Tensor, shard: Shard) -> tuple[Tensor, Tensor]:
    """``(m_local, m_safe)``: the row maxima here and over the group (an all-reduce MAX)."""
    if x.shape[1] == 0:
        m_local = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    else:
        m_local = x.amax(dim=1)
    m = all_reduce(m_local.clone(), "max", shard.group)
    return m_local, torch.where(torch.isneginf(m), 0.0, m)


def exponentials(x: Tensor, m_local: Tensor, out: Tensor | None) -> Tensor:
    """``exp(z - m_r)`` (shift 0 where the local row has no finite logit), into ``out``."""
    shift = torch.where(torch.isneginf(m_local), 0.0, m_local).unsqueeze(1)
    e = torch.sub(x, shift, out=out) if out is not None else x - shift
    return e.exp_()


def rescaled_sum(e: Tensor, m_local: Tensor, m_safe: Tensor) -> Tensor:
    """This rank's share of ``sum_k exp(z_k - M)``: ``d_r exp(m_r - M)`` (0 for an empty row)."""
    return e.sum(dim=1) * torch.exp(m_local - m_safe)


def finish(e: Tensor, m_local: Tensor, m_safe: Tensor, d: Tensor) -> GlobalLSE:
    """The statistics once ``d = sum_k exp(z_k - M)`` over the group is known."""
    empty = d == 0
    log_d = torch.log(torch.where(empty, 1.0, d))
    lse_safe = m_safe + log_d
    lse = torch.where(empty, -math.inf, lse_safe)
    return GlobalLSE(e, m_local, m_safe, log_d, lse, lse_safe)


def global_lse(x: Tensor, shard: Shard, out: Tensor | None) -> GlobalLSE:
    """The statistics of a chunk (all-reduce MAX, then SUM, of ``R`` floats each)."""
    m_local, m_safe = global_max(x, shard)
    e = exponentials(x, m_local, out)
    d = all_reduce(rescaled_sum(e, m_local, m_safe), "sum", shard.group)
    return finish(e, m_local, m_safe, d)


def global_log_softmax(x: Tensor, shard: Shard) -> Tensor:
    """``log_softmax`` over the whole vocabulary of this rank's columns ``x`` ``(N, K_local)``.

    ``(z - M) - log sum_k e^{z_k - M}`` as the engine forms ``s``, chunk by chunk (two
    all-reduces of ``R`` floats per chunk); computed without autograd (a teacher's logits).
    """
    n = x.shape[0]
    out = torch.empty_like(x)
    rows = chunk_rows(shard)
    with torch.no_grad():
        for r0 in range(0, n, rows):
            c = x[r0 : r0 + rows]
            out[r0 : r0 + rows] = global_lse(c, shard, None).log_probs(c)
    return out
