r"""One chunk of rows of a vocabulary-parallel loss: row statistics over the group, then the rest.

After the row statistics the loss and this rank's slice of the gradient are formed locally.

Each rank holds the columns ``[a, b)`` of the logits ``z`` ``(R, K)``. With
``s = z - lse(z)``, ``q = e^s``, the target ``P``, the multiplier ``m_k = w_k c_k`` and a term
``(F, G)`` (:mod:`crossent.core.term`), the engine's loss and gradient are

.. math::

    \ell = \sum_k m_k F(s_k, P_k) + \lambda\,\mathrm{lse}^2, \qquad
    \frac{\partial \ell}{\partial z_j} = m_j G_j - q_j \Big(\sum_k m_k G_k
        - 2 \lambda\, \mathrm{lse}\Big).

Everything per class is local; the sums over ``k`` run over the whole vocabulary, so they are
all-reduced, one float per row each (never anything of size ``R x K``):

1. ``M = max_k z_k``: all-reduce MAX of each rank's row maximum ``m_r``;
2. ``d = sum_k e^{z_k - M}``: all-reduce SUM of ``d_r e^{m_r - M}`` with
   ``d_r = sum_{k local} e^{z_k - m_r}`` (the exponentials, shifted by the local maximum, are
   kept: ``q_j = e^{z_j - m_r} e^{m_r - lse}``, one ``exp`` per logit as in the engine);
3. the one-hot route (class indices without smoothing, a term with ``F(s, 0) = G(s, 0) = 0``)
   needs only ``s_t``: the rank that holds the target adds ``z_t - M`` to the all-reduce of
   step 2, and ``F(s_t)``, ``G(s_t)`` are then known on every rank (2 all-reduces per chunk,
   ``3R`` floats); the gradient is ``q_j c + [j = t] m_t G_t``;
4. the full route (smoothing, probability targets, terms acting on every class, the
   distillation divergences) evaluates ``F`` and ``G`` on the local columns and all-reduces
   the row sums ``(sum m_k F_k, sum m_k G_k)`` (3 all-reduces per chunk, ``4R`` floats).

The gradient is then formed locally, already multiplied by the reduction's factor: the
backward needs no communication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core.autograd import compute_dtype
from crossent.core.problem import EngineOptions, reduction_scale
from crossent.distributed.collectives import all_reduce
from crossent.distributed.shard import Shard
from crossent.distributed.targets import ShardedTargets
from crossent.engine.multiclass import CHUNK_ELEMENTS


def chunk_rows(shard: Shard) -> int:
    """Rows per chunk: ~``CHUNK_ELEMENTS`` logits on the widest rank (the same on every rank)."""
    return max(1, CHUNK_ELEMENTS // max(1, shard.max_width))


@dataclass
class _GlobalLSE:
    """A chunk's log-sum-exp over the whole vocabulary, and this rank's exponentials."""

    e: Tensor  # (R, K_local) exp(z - m_r), m_r the local row maximum (0 if the row is empty)
    m_local: Tensor  # (R,) local row maximum, -inf where no local logit is finite
    m_safe: Tensor  # (R,) global row maximum, 0 for a fully masked row
    log_d: Tensor  # (R,) log sum_k exp(z_k - M) (0 for a fully masked row)
    lse: Tensor  # (R,) -inf for a fully masked row
    lse_safe: Tensor  # (R,) 0 for a fully masked row

    def probs(self) -> Tensor:
        """``q = e * exp(m_r - lse)``, in place of ``e``."""
        return self.e.mul_(torch.exp(self.m_local - self.lse_safe).unsqueeze(1))


def _local_max(x: Tensor) -> Tensor:
    if x.shape[1] == 0:
        return torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    return x.amax(dim=1)


def _global_max(x: Tensor, shard: Shard) -> tuple[Tensor, Tensor]:
    """``(m_local, m_safe)``: the row maxima here and over the group (collective 1)."""
    m_local = _local_max(x)
    m = all_reduce(m_local.clone(), "max", shard.group)
    return m_local, torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def _exponentials(x: Tensor, m_local: Tensor, out: Tensor | None) -> Tensor:
    """``exp(z - m_r)`` (shift 0 where the local row has no finite logit), into ``out``."""
    shift = torch.where(torch.isneginf(m_local), torch.zeros_like(m_local), m_local)
    e = torch.sub(x, shift.unsqueeze(1), out=out) if out is not None else x - shift.unsqueeze(1)
    return e.exp_()


def _rescaled_sum(e: Tensor, m_local: Tensor, m_safe: Tensor) -> Tensor:
    """This rank's share of ``sum_k exp(z_k - M)``: ``d_r exp(m_r - M)`` (0 for an empty row)."""
    return e.sum(dim=1) * torch.exp(m_local - m_safe)


def _finish_lse(e: Tensor, m_local: Tensor, m_safe: Tensor, d: Tensor) -> _GlobalLSE:
    empty = d == 0
    log_d = torch.log(torch.where(empty, torch.ones_like(d), d))
    lse_safe = m_safe + log_d
    lse = torch.where(empty, torch.full_like(d, -math.inf), lse_safe)
    return _GlobalLSE(e, m_local, m_safe, log_d, lse, lse_safe)


def _weighted(a: Tensor, value: Tensor) -> Tensor:
    """``a * value`` with 0 where ``a == 0`` even if ``value`` is inf."""
    return torch.where(a == 0, torch.zeros_like(value), a * value)


def onehot_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``(R,)`` and gradient of a one-hot chunk (2 all-reduces: ``R`` and ``2R`` floats).

    ``out`` may be ``x`` itself (the gradient overwrites the logits) or a separate buffer.
    """
    assert tg.index is not None and tg.here is not None and tg.elem_weight is not None
    m_local, m_safe = _global_max(x, shard)
    if shard.width:
        z_t = x.gather(1, tg.index.unsqueeze(1)).squeeze(1)  # before `out` (maybe x) is written
        z_t = torch.where(tg.here, z_t - m_safe, torch.zeros_like(z_t))
    else:
        z_t = torch.zeros_like(m_safe)
    e = _exponentials(x, m_local, out if want_grad else None)
    packed = torch.stack([_rescaled_sum(e, m_local, m_safe), z_t])
    all_reduce(packed, "sum", shard.group)
    stats = _finish_lse(e, m_local, m_safe, packed[0])
    s_t = packed[1] - stats.log_d
    one = torch.ones((), dtype=x.dtype, device=x.device)
    ew = tg.elem_weight.to(x.dtype)
    loss = _weighted(ew, opts.term.value(s_t, one))
    if opts.z_loss:
        loss = loss + torch.where(tg.valid, opts.z_loss * stats.lse**2, torch.zeros_like(loss))
    if not want_grad:
        return loss, None
    wg_t = _weighted(ew, opts.term.grad(s_t, one)) * scale
    coef = -wg_t
    if opts.z_loss:
        coef = coef + 2 * opts.z_loss * stats.lse_safe * scale * tg.valid.to(x.dtype)
    grad = stats.probs().mul_(coef.unsqueeze(1))
    if shard.width:
        at_target = torch.where(tg.here, wg_t, torch.zeros_like(wg_t))
        grad.scatter_add_(1, tg.index.unsqueeze(1), at_target.unsqueeze(1))
    return loss, grad


def full_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``(R,)`` and gradient of a chunk with a full target (3 all-reduces: ``R, R, 2R``).

    The gradient is a new tensor (the caller copies it where it belongs).
    """
    m_local, m_safe = _global_max(x, shard)
    e = _exponentials(x, m_local, None)
    d = all_reduce(_rescaled_sum(e, m_local, m_safe), "sum", shard.group)
    stats = _finish_lse(e, m_local, m_safe, d)
    s = (x - stats.m_safe.unsqueeze(1)) - stats.log_d.unsqueeze(1)
    p = tg.chunk_target(
        shard.width, shard.num_classes, opts.label_smoothing, opts.smoothing, x.dtype
    )
    term = opts.term
    f, g = term.value_and_grad(s, p) if want_grad else (term.value(s, p), None)
    if term.vanishes_where_target_zero:
        f = torch.where(p == 0, torch.zeros_like(f), f)
        g = None if g is None else torch.where(p == 0, torch.zeros_like(g), g)
    if tg.mult is not None:
        f = f * tg.mult
        g = None if g is None else g * tg.mult
    sums = torch.stack([f.sum(dim=1), g.sum(dim=1)]) if g is not None else f.sum(dim=1)[None]
    all_reduce(sums, "sum", shard.group)
    loss = sums[0]
    if opts.z_loss:
        loss = loss + opts.z_loss * stats.lse**2
    loss = torch.where(tg.valid, loss, torch.zeros_like(loss))
    if g is None:
        return loss, None
    row = sums[1]
    if opts.z_loss:
        row = row - 2 * opts.z_loss * stats.lse_safe
    q = stats.probs()
    grad = g.sub_(q.mul_(row.unsqueeze(1)))
    grad.mul_(torch.where(tg.valid, scale, torch.zeros_like(scale)).unsqueeze(1))
    return loss, grad


def chunk_pass(
    z: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
) -> Tensor:
    """Losses ``(R,)`` of one chunk ``z`` ``(R, K_local)``; its gradient into ``out`` if given.

    ``z`` is computed in its compute dtype (float32 for half inputs); ``out`` (the input's
    dtype) may be ``z`` itself.
    """
    x = z.to(compute_dtype(z.dtype))
    want_grad = out is not None
    if opts.fast_path(tg):
        direct = out if (out is not None and x.dtype == out.dtype) else None
        loss, g = onehot_chunk(x, tg, scale, opts, shard, direct, want_grad)
    else:
        loss, g = full_chunk(x, tg, scale, opts, shard, want_grad)
    if g is not None and out is not None and g.data_ptr() != out.data_ptr():
        out.copy_(g)
    return loss


def sharded_pass(
    z: Tensor, targets: ShardedTargets, opts: EngineOptions, shard: Shard, want_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-row losses ``(N,)`` and this rank's gradient ``(N, K_local)`` (or ``None``).

    The rows are walked in chunks of :func:`chunk_rows` (the same on every rank, so the
    collectives match); with ``opts.inplace_backward`` the gradient overwrites ``z``.
    """
    n = z.shape[0]
    cdt = compute_dtype(z.dtype)
    grad = None
    if want_grad:
        grad = z if opts.inplace_backward else torch.empty_like(z)
    scale = reduction_scale(targets, opts.reduction, cdt)  # type: ignore[arg-type]
    losses = torch.empty(n, dtype=cdt, device=z.device)
    rows = chunk_rows(shard)
    for r0 in range(0, n, rows):
        span = slice(r0, min(n, r0 + rows))
        out = None if grad is None else grad[span]
        losses[span] = chunk_pass(z[span], targets.rows(span), scale, opts, shard, out)
    return losses, grad


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
            m_local, m_safe = _global_max(c, shard)
            e = _exponentials(c, m_local, None)
            d = all_reduce(_rescaled_sum(e, m_local, m_safe), "sum", shard.group)
            stats = _finish_lse(e, m_local, m_safe, d)
            out[r0 : r0 + rows] = (c - m_safe.unsqueeze(1)) - stats.log_d.unsqueeze(1)
    return out
