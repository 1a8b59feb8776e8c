r"""One chunk of the engine's forward pass: row statistics, then the loss and the gradient.

A chunk is ``(R, K, Dc)`` logits (or ``(R, K)`` for 2-D inputs) in the compute dtype. With
``s = (z - m) - log d`` (``m`` the row maximum, ``d = sum_k exp(z_k - m)``), ``q = e^s`` and
a term ``(F, G)`` (docs/design.md, "One engine"), each route returns the per-element losses
and the gradient

.. math::

    \frac{\partial \ell}{\partial z_j} = w_j G(s_j, P_j) - q_j \sum_k w_k G(s_k, P_k)
        + 2 \lambda \operatorname{lse}(z)\, q_j

already multiplied by the reduction's factor, written into the caller's buffer where it can:

* :func:`fast_chunk` / :func:`fast_softmax_rows`: one-hot targets and a term that vanishes
  where ``P = 0`` (only ``lse`` and the target logit per row);
* :func:`linear_chunk`: smoothed class indices for a term linear in ``P`` (row sums of
  ``F(s, 1)`` and ``G(s, 1)``, no target tensor);
* :func:`full_chunk`: a full target distribution ``P`` per element.

The chunk loop that calls them, the reductions and the options are :mod:`crossent.engine`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent.core.targets import Targets, smoothing_levels
from crossent.core.term import Term
from crossent.core.threads import run_blocks

if TYPE_CHECKING:
    from crossent.core.problem import EngineOptions


@dataclass
class RowStats:
    """Per-row statistics of a chunk: ``q = e / d``, ``lse`` and the target's ``log q_t``."""

    e: Tensor  # (R, K, Dc) exp(z - m), or q itself (then d_safe is 1); may live in `out`
    d_safe: Tensor  # (R, 1, Dc) sum of e, 1 where the row is fully masked (or 0-dim 1)
    lse: Tensor  # (R, 1, Dc) log-sum-exp, -inf where the row is fully masked
    lse_safe: Tensor  # (R, 1, Dc) lse with 0 for fully masked rows (so s = z - lse stays -inf)
    s_t: Tensor | None  # (R, 1, Dc) log q_t when targets were given
    m: Tensor | None = None  # (R, 1, Dc) row maximum (0 for a fully masked row); None: not kept
    log_d: Tensor | None = None  # (R, 1, Dc) log of d_safe, with m

    def log_probs(self, x: Tensor) -> Tensor:
        """``s = (z - m) - log d``: exact to float rounding even for logits near 1e4.

        (``z - lse`` would round ``lse`` first: about 5e-4 off at ``|lse| = 1e4`` in float32.)
        """
        assert self.m is not None and self.log_d is not None, "stats without m (softmax route)"
        return (x - self.m) - self.log_d


def row_stats(x: Tensor, out: Tensor | None, t: Tensor | None = None) -> RowStats:
    """Exponentials and log-sum-exp of a chunk ``x`` (compute dtype), ``e`` into ``out``.

    ``s_t = (z_t - m) - log d`` is formed as ``log_softmax`` does (exact for large logits).
    """
    z_t = x.gather(1, t) if t is not None else None  # before `out` (maybe x) is overwritten
    m = x.amax(dim=1, keepdim=True)
    # A fully masked row (all -inf) has m = -inf; shift by 0 instead so no -inf - -inf = NaN.
    m = torch.where(torch.isinf(m) & (m < 0), torch.zeros_like(m), m)
    e = torch.sub(x, m, out=out) if out is not None else x - m
    e.exp_()
    d = e.sum(dim=1, keepdim=True)
    empty = d == 0
    d_safe = torch.where(empty, torch.ones_like(d), d)
    log_d = torch.log(d_safe)
    lse_safe = m + log_d  # a fully masked row has m = 0 and d_safe = 1 here: 0
    lse = torch.where(empty, torch.full_like(d, -math.inf), lse_safe)
    s_t = None if z_t is None else (z_t - m) - log_d
    return RowStats(e, d_safe, lse, lse_safe, s_t, m, log_d)


# Softmax probabilities at the target at least this large are normal floats with full
# relative precision, so log(q_t) is as exact as log_softmax (e^-69; float32 underflows at
# ~e^-87). Rows below it (and fully masked rows) are recomputed from log-sum-exp.
_MIN_TARGET_PROB = 1e-30


def _imprecise_rows(q_t: Tensor) -> Tensor | None:
    """Rows whose ``log q_t`` must be recomputed from log-sum-exp, or ``None`` if there are none.

    ``q_t`` is ``(R, 1)``; a row qualifies where ``q_t`` is below :data:`_MIN_TARGET_PROB` or
    NaN (a fully masked row).
    """
    bad = ~(q_t >= _MIN_TARGET_PROB)
    if not bool(bad.any()):
        return None
    return bad.squeeze(1).nonzero().squeeze(1)


def _softmax_stats(x: Tensor, t: Tensor, out: Tensor) -> RowStats:
    """Statistics of an ``(R, K)`` chunk from PyTorch's fused softmax, ``q`` into ``out``.

    One kernel (max, exp-and-sum, scale) instead of four passes; ``x`` must stay intact.
    ``s_t = log q_t`` and ``lse = z_t - s_t``; rows where ``q_t`` is tiny, 0 or NaN (a target
    far below the row's maximum, a masked target, a fully masked row) are recomputed by
    :func:`row_stats`.
    """
    q = torch.softmax(x, dim=1, out=out)
    q_t = q.gather(1, t)
    s_t = torch.log(q_t)
    lse = x.gather(1, t) - s_t
    lse_safe = lse
    rows = _imprecise_rows(q_t)
    if rows is not None:
        exact = row_stats(x.index_select(0, rows), None, t.index_select(0, rows))
        q.index_copy_(0, rows, exact.e.div_(exact.d_safe))
        s_t.index_copy_(0, rows, exact.s_t)
        lse.index_copy_(0, rows, exact.lse)
        lse_safe = lse.clone().index_copy_(0, rows, exact.lse_safe)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return RowStats(q, one, lse, lse_safe, s_t)


def _chunk_stats(x: Tensor, t: Tensor, out: Tensor | None) -> RowStats:
    """Statistics of a chunk by the fastest route that is exact for it.

    :func:`_softmax_stats` where ``out`` is a separate buffer for an ``(R, K)`` chunk, else
    :func:`row_stats` (``out`` may be ``x`` itself with ``inplace_backward``).
    """
    if out is not None and x.dim() == 2 and out.data_ptr() != x.data_ptr():
        return _softmax_stats(x, t, out)
    return row_stats(x, out, t)


def fast_chunk(
    x: Tensor,
    t: Tensor,
    ew: Tensor,
    valid: Tensor,
    scale: Tensor,
    opts: EngineOptions,
    out: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``(R, Dc)`` and, if ``out`` is given, the gradient of a one-hot chunk.

    ``t`` are target indices ``(R, 1, Dc)``, ``ew`` the per-element weights ``w_t`` (0 where
    ignored) ``(R, 1, Dc)``, ``valid`` ``False`` where ignored (the z-loss is unweighted: it
    applies to every element that is not ignored, whatever its class weight), ``scale`` the
    reduction's factor (1/denominator for mean, 0-dim).
    With ``q = softmax(z)`` the gradient is ``dl/dz_j = q_j c + [j = t] w_t G_t`` with one
    coefficient ``c = 2 lam lse - w_t G_t`` per row.
    """
    stats = _chunk_stats(x, t, out)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    # Zero-weight and ignored elements contribute 0 even where F is inf (masked target).
    loss = weighted(ew, opts.term.value(stats.s_t, one))
    if opts.z_loss:
        z_term = opts.z_loss * stats.lse**2
        loss = loss + torch.where(valid, z_term, torch.zeros_like(z_term))
    if out is None:
        return loss.squeeze(1), None
    wg_t = weighted(ew, opts.term.grad(stats.s_t, one)) * scale
    coef = -wg_t
    if opts.z_loss:
        coef = coef + 2 * opts.z_loss * stats.lse_safe * scale * valid.to(x.dtype)
    grad = stats.e.mul_(coef / stats.d_safe)
    grad.scatter_add_(1, t, wg_t)
    return loss.squeeze(1), grad


def fast_softmax_rows(
    z: Tensor, targets: Targets, scale: Tensor, opts: EngineOptions, grad: Tensor, rows: int
) -> Tensor:
    """One-hot fast path for ``(N, K)`` logits with a separate gradient buffer ``grad``.

    Per chunk of rows only what must happen while the chunk is in cache: PyTorch's fused
    softmax writes ``q`` into ``grad``, ``q_t`` is gathered, and ``q`` is scaled by the row's
    coefficient ``c`` (``dl/dz_j = q_j c + [j = t] w_t G_t``). Everything else (the target
    terms ``w_t G_t``, the losses, the target-class entries) runs once over all rows: a
    handful of operations per chunk instead of dozens. For a term with ``F(s, 1) = c s``
    (cross-entropy) and no z-loss, ``c`` does not depend on the logits and is computed up
    front. Rows where ``q_t`` is tiny, 0 or NaN are recomputed from log-sum-exp at the end
    (see :func:`_softmax_stats`). ``rows`` is the number of rows per chunk. Returns the
    per-row losses ``(N,)``.
    """
    n, k = z.shape
    term = opts.term
    t = targets.index.reshape(n, 1)
    ew = targets.elem_weight.reshape(n, 1).to(z.dtype)
    valid = targets.valid.reshape(n, 1)
    one = torch.ones((), dtype=z.dtype, device=z.device)
    z_t = z.gather(1, t)
    q_t = torch.empty_like(z_t)
    known = term.affine_slope is not None and not opts.z_loss
    # w_t G_t times the reduction's factor: known now for an affine term, else per chunk.
    wg_t = weighted(ew, term.affine_slope * one) * scale if known else torch.empty_like(z_t)
    coef = -wg_t if known else None
    # d(lam lse^2)/dz_j = 2 lam lse q_j for every element that is not ignored
    z_coef = 2 * opts.z_loss * scale * valid.to(z.dtype) if opts.z_loss else None

    def block(r: slice) -> None:
        q = torch.softmax(z[r], dim=1, out=grad[r])
        torch.gather(q, 1, t[r], out=q_t[r])
        if known:
            q.mul_(coef[r])
            return
        s_t = torch.log(q_t[r])
        wg = torch.mul(weighted(ew[r], term.grad(s_t, one)), scale, out=wg_t[r])
        c = -wg
        if z_coef is not None:  # lse = z_t - s_t
            c = c + z_coef[r] * (z_t[r] - s_t)
        q.mul_(c)

    run_blocks([slice(r0, min(n, r0 + rows)) for r0 in range(0, n, rows)], block)
    grad.scatter_add_(1, t, wg_t)
    s_t = torch.log(q_t)
    loss = weighted(ew, term.value(s_t, one))
    if opts.z_loss:
        loss = loss + torch.where(valid, opts.z_loss * (z_t - s_t) ** 2, torch.zeros_like(loss))
    idx = _imprecise_rows(q_t)
    if idx is not None:
        x = z.index_select(0, idx)  # a copy: recomputed in place by the four-pass route
        exact, g = fast_chunk(x, t[idx], ew[idx], valid[idx], scale, opts, x)
        grad.index_copy_(0, idx, g)
        loss.index_copy_(0, idx, exact.unsqueeze(1))
    return loss.squeeze(1)


def linear_chunk(
    x: Tensor,
    t: Tensor,
    ew: Tensor,
    valid: Tensor,
    scale: Tensor,
    opts: EngineOptions,
    mult: Tensor | None,
    out: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Loss and gradient of a smoothed class-index chunk for a term linear in ``P``.

    With ``P = off + (on - off) onehot(t)``, ``f = F(s, 1)``, ``g = G(s, 1)`` and the
    per-class multiplier ``m``:

    ``loss = off sum_k m_k f_k + (on - off) m_t f_t``,
    ``dl/dz_j = off m_j g_j + (on - off) m_t g_t [j = t] - q_j S``,
    ``S = off sum_k m_k g_k + (on - off) m_t g_t``.
    """
    off, on = smoothing_levels(opts.label_smoothing, opts.smoothing, x.shape[1])
    if opts.term.affine_slope is not None:
        parts = _affine_parts(x, t, opts.term.affine_slope, mult, out)
    else:
        parts = _term_parts(x, t, opts.term, mult, out)
    stats = parts.stats
    loss = off * parts.row_f + weighted(ew, (on - off) * parts.f_t)
    if opts.z_loss:
        loss = loss + opts.z_loss * stats.lse**2
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if out is None:
        return loss.squeeze(1), None
    g_t = weighted(ew, (on - off) * parts.g_t)
    big_s = off * parts.row_g + g_t
    if opts.z_loss:
        big_s = big_s - 2 * opts.z_loss * stats.lse_safe
    vs = torch.where(valid, scale, torch.zeros_like(scale))
    # dl/dz_j = vs * (off m_j g_j - q_j S) + vs (on - off) m_t g_t [j = t]
    grad = stats.e.mul_(-big_s * vs / stats.d_safe)
    if parts.mg is None:  # m_j g_j = c (a constant)
        grad.add_(vs * (off * parts.g_t))
    else:  # (R, K, Dc), or (1, K, Dc) broadcast over the rows
        grad.addcmul_(parts.mg, vs, value=off)
    grad.scatter_add_(1, t, g_t * vs)
    return loss.squeeze(1), grad


def weighted(a: Tensor, value: Tensor) -> Tensor:
    """``a * value`` with 0 where ``a == 0`` even if ``value`` is inf (no ``0 * inf = NaN``).

    Used for element weights (0 where ignored) and the binary engine's factors.
    """
    return torch.where(a == 0, torch.zeros_like(value), a * value)


@dataclass
class _LinearParts:
    """What the smoothed-index path needs of ``f = F(s, 1)`` and ``g = G(s, 1)`` per row."""

    stats: RowStats
    row_f: Tensor  # (R, 1, Dc) sum_k m_k f_k
    f_t: Tensor  # (R, 1, Dc) f at the target class
    row_g: Tensor  # (R, 1, Dc) or 0-dim: sum_k m_k g_k
    g_t: Tensor  # (R, 1, Dc) or 0-dim: g at the target class
    mg: Tensor | None  # m_k g_k per class: (R, K, Dc), (1, K, Dc), or None for a constant


def _affine_parts(
    x: Tensor, t: Tensor, c: float, mult: Tensor | None, out: Tensor | None
) -> _LinearParts:
    """Parts of a term with ``F(s, 1) = c s``: ``sum_k m_k f_k = c (sum_k m_k z_k - lse M)``.

    Needs only sums of the logits, taken before the exponentials overwrite them (``out``
    may be ``x`` itself with ``inplace_backward``): no temporary of chunk size.
    """
    if mult is None:
        z_sum, m_sum = x.sum(dim=1, keepdim=True), x.shape[1]
    elif x.dim() == 2:  # (R, K): a matrix-vector product, no (R, K) temporary
        z_sum, m_sum = (x @ mult.reshape(-1)).unsqueeze(1), mult.sum()
    else:
        z_sum, m_sum = (x * mult).sum(dim=1, keepdim=True), mult.sum()
    stats = _chunk_stats(x, t, out)
    cc = torch.full((), c, dtype=x.dtype, device=x.device)
    return _LinearParts(
        stats=stats,
        row_f=c * (z_sum - stats.lse_safe * m_sum),
        f_t=c * stats.s_t,
        row_g=cc * m_sum,
        g_t=cc,
        mg=None if mult is None else c * mult,
    )


def _term_parts(
    x: Tensor, t: Tensor, term: Term, mult: Tensor | None, out: Tensor | None
) -> _LinearParts:
    """Parts of any term linear in ``P``, evaluating ``F(s, 1)`` and ``G(s, 1)`` per class."""
    # e may go straight into the gradient buffer unless that buffer is x itself (in place):
    # s is still needed after the exponentials. The four-pass route keeps m and log d.
    separate = out is not None and out.data_ptr() != x.data_ptr()
    stats = row_stats(x, out if separate else None, t)
    s = stats.log_probs(x)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    f, g = term.value_and_grad(s, one) if out is not None else (term.value(s, one), None)
    f_t = f.gather(1, t)
    row_f = (f * mult if mult is not None else f).sum(dim=1, keepdim=True)
    del f
    if g is None:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return _LinearParts(stats, row_f, f_t, zero, zero, None)
    g_t = g.gather(1, t)
    mg = g * mult if mult is not None else g
    return _LinearParts(stats, row_f, f_t, mg.sum(dim=1, keepdim=True), g_t, mg)


def full_chunk(
    x: Tensor,
    p: Tensor,
    valid: Tensor,
    scale: Tensor,
    opts: EngineOptions,
    mult: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``(R, Dc)`` and optionally the gradient for a chunk with a full target ``p``.

    ``mult`` is the per-class multiplier ``w_k * class_scale_k`` as ``(1, K, 1)`` or ``None``;
    ``valid`` ``(R, 1, Dc)`` is ``False`` for ignored elements.
    """
    stats = row_stats(x, None)
    s = stats.log_probs(x)
    term = opts.term
    f = term.value(s, p)
    if term.vanishes_where_target_zero:
        f = torch.where(p == 0, torch.zeros_like(f), f)
    if mult is not None:
        f = f * mult
    loss = f.sum(dim=1, keepdim=True)
    if opts.z_loss:
        loss = loss + opts.z_loss * stats.lse**2
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if not want_grad:
        return loss.squeeze(1), None
    g = term.grad(s, p)
    if term.vanishes_where_target_zero:
        g = torch.where(p == 0, torch.zeros_like(g), g)
    if mult is not None:
        g = g * mult
    q = stats.e.div_(stats.d_safe)
    # dl/dz_j = w_j G_j - q_j sum_k w_k G_k (+ 2 lam lse q_j)
    row = g.sum(dim=1, keepdim=True)
    if opts.z_loss:
        row = row - 2 * opts.z_loss * stats.lse_safe
    grad = g.sub_(q.mul_(row))
    grad.mul_(torch.where(valid, scale, torch.zeros_like(scale)))
    return loss.squeeze(1), grad
