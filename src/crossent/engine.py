r"""The term engine: one chunked pass computes any per-class loss and its analytic gradient.

For logits ``z`` of one element (``K`` classes), target distribution ``P``, class weights
``w`` and a term ``(F, G)`` from :mod:`crossent.terms` (DESIGN §1):

.. math::

    s = z - \operatorname{lse}(z), \quad q = e^{s}, \quad
    \ell = \sum_k w_k F(s_k, P_k) + \lambda\,\operatorname{lse}(z)^2,

    \frac{\partial \ell}{\partial z_j} = w_j G(s_j, P_j) - q_j \sum_k w_k G(s_k, P_k)
        + 2 \lambda \operatorname{lse}(z)\, q_j .

Design (chosen by measurement, see ``benchmarks/bench_cross_entropy.py`` and the README):
the gradient is formed **in the forward pass**, chunk by chunk while the chunk is in cache,
and stored; backward returns it untouched when ``grad_output == 1`` (the usual scalar loss)
and scales a copy otherwise, so a second backward (``retain_graph=True``) is correct. On this
CPU the exponential is the costly part: forming the gradient in forward needs one ``exp`` per
logit, the save-statistics-and-recompute design needs two; at (4096, 32000), 2 threads, it
measured 0.614 s against 0.454 s (``benchmarks/probe_gradient_timing.py``). Nothing of
logits size is kept besides the gradient itself (no log-softmax beside the logits).

* One-hot fast path: for class-index targets without smoothing and a term that vanishes
  where ``P = 0``, a row needs only ``lse`` and the target logit; the gradient is
  ``q_j c + [j = t] w_t G_t`` with one coefficient ``c`` per row. For ``(N, K)`` logits
  with a separate gradient buffer (:func:`_fast_softmax_rows`) a chunk costs PyTorch's fused
  softmax, one gather and one scaling; the per-row target terms run once over all rows
  (the per-chunk small operations were ~40% of the step at (4096, 32000)).
* ``inplace_backward=True`` writes the gradient into the logits' storage (no new buffer);
  the logits' version counter is bumped so that any other saved use fails loudly, and a
  second backward raises.
* Half inputs (fp16/bf16) are computed in float32; the loss is returned in float32 and the
  gradient in the input dtype. float64 stays float64.
* Under ``torch.no_grad()`` (or when the logits do not require grad) only the loss is
  computed. Probability targets that require grad, and double backward, go through a
  differentiable formula written from ``F`` (slower, same values).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent import _checks, config, kernels
from crossent._autograd import EngineFunction, Problem, compute_dtype, writes_in_place
from crossent._targets import (
    Targets,
    check_input,
    check_smoothing,
    divide_or_zero,
    prepare_targets,
    smoothed_target_chunk,
    smoothing_levels,
    warn_if_probabilities,
)
from crossent.terms import Term, value_where_target

# Elements per chunk: ~1M float32 (4 MiB) keeps a chunk's temporaries in cache; measured
# best among 2^18..2^22 at (4096, 32000) on the 2-core benchmark machine.
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class EngineOptions:
    """Settings of one engine call (already validated)."""

    term: Term
    weight: Tensor | None
    class_scale: Tensor | None
    ignore_index: int
    reduction: str
    label_smoothing: float
    smoothing: str
    z_loss: float
    inplace_backward: bool

    def fast_path(self, targets: Targets) -> bool:
        """Whether the one-hot fast path applies (one gather per row)."""
        return (
            targets.index is not None
            and self.label_smoothing == 0
            and self.term.vanishes_where_target_zero
        )

    def softmax_rows(self, z: Tensor, targets: Targets) -> bool:
        """Whether :func:`_fast_softmax_rows` applies to the ``(N, K, D)`` logits ``z``.

        The one-hot fast path for ``(N, K)`` logits in their compute dtype with a separate
        gradient buffer (not in place).
        """
        return (
            self.fast_path(targets)
            and z.shape[2] == 1
            and not self.inplace_backward
            and z.dtype == compute_dtype(z.dtype)
        )


def iter_chunks(n: int, k: int, d: int) -> Iterator[tuple[slice, slice]]:
    """Row and position slices of ``(N, K, D)`` covering ~``CHUNK_ELEMENTS`` logits each."""
    if n * k * d == 0:  # no logits (an empty batch or a zero-size spatial dim): no chunks
        return
    if k * d <= CHUNK_ELEMENTS:
        rows = max(1, CHUNK_ELEMENTS // (k * d))
        for n0 in range(0, n, rows):
            yield slice(n0, min(n, n0 + rows)), slice(0, d)
    else:
        span = max(1, CHUNK_ELEMENTS // k)
        for n0 in range(n):
            for d0 in range(0, d, span):
                yield slice(n0, n0 + 1), slice(d0, min(d, d0 + span))


@dataclass
class _RowStats:
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


def _row_stats(x: Tensor, out: Tensor | None, t: Tensor | None = None) -> _RowStats:
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
    return _RowStats(e, d_safe, lse, lse_safe, s_t, m, log_d)


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


def _softmax_stats(x: Tensor, t: Tensor, out: Tensor) -> _RowStats:
    """Statistics of an ``(R, K)`` chunk from PyTorch's fused softmax, ``q`` into ``out``.

    One kernel (max, exp-and-sum, scale) instead of four passes; ``x`` must stay intact.
    ``s_t = log q_t`` and ``lse = z_t - s_t``; rows where ``q_t`` is tiny, 0 or NaN (a target
    far below the row's maximum, a masked target, a fully masked row) are recomputed by
    :func:`_row_stats`.
    """
    q = torch.softmax(x, dim=1, out=out)
    q_t = q.gather(1, t)
    s_t = torch.log(q_t)
    lse = x.gather(1, t) - s_t
    lse_safe = lse
    rows = _imprecise_rows(q_t)
    if rows is not None:
        exact = _row_stats(x.index_select(0, rows), None, t.index_select(0, rows))
        q.index_copy_(0, rows, exact.e.div_(exact.d_safe))
        s_t.index_copy_(0, rows, exact.s_t)
        lse.index_copy_(0, rows, exact.lse)
        lse_safe = lse.clone().index_copy_(0, rows, exact.lse_safe)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return _RowStats(q, one, lse, lse_safe, s_t)


def _chunk_stats(x: Tensor, t: Tensor, out: Tensor | None) -> _RowStats:
    """Statistics of a chunk by the fastest route that is exact for it.

    :func:`_softmax_stats` where ``out`` is a separate buffer for an ``(R, K)`` chunk, else
    :func:`_row_stats` (``out`` may be ``x`` itself with ``inplace_backward``).
    """
    if out is not None and x.dim() == 2 and out.data_ptr() != x.data_ptr():
        return _softmax_stats(x, t, out)
    return _row_stats(x, out, t)


def _fast_chunk(
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


def _fast_softmax_rows(
    z: Tensor, targets: Targets, scale: Tensor, opts: EngineOptions, grad: Tensor
) -> Tensor:
    """One-hot fast path for ``(N, K)`` logits with a separate gradient buffer ``grad``.

    Per chunk of rows only what must happen while the chunk is in cache: PyTorch's fused
    softmax writes ``q`` into ``grad``, ``q_t`` is gathered, and ``q`` is scaled by the row's
    coefficient ``c`` (``dl/dz_j = q_j c + [j = t] w_t G_t``). Everything else (the target
    terms ``w_t G_t``, the losses, the target-class entries) runs once over all rows: a
    handful of operations per chunk instead of dozens. For a term with ``F(s, 1) = c s``
    (cross-entropy) and no z-loss, ``c`` does not depend on the logits and is computed up
    front. Rows where ``q_t`` is tiny, 0 or NaN are recomputed from log-sum-exp at the end
    (see :func:`_softmax_stats`). Returns the per-row losses ``(N,)``.
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
    rows = max(1, CHUNK_ELEMENTS // max(k, 1))
    for r0 in range(0, n, rows):
        r = slice(r0, min(n, r0 + rows))
        q = torch.softmax(z[r], dim=1, out=grad[r])
        torch.gather(q, 1, t[r], out=q_t[r])
        if known:
            q.mul_(coef[r])
            continue
        s_t = torch.log(q_t[r])
        wg = torch.mul(weighted(ew[r], term.grad(s_t, one)), scale, out=wg_t[r])
        c = -wg
        if z_coef is not None:  # lse = z_t - s_t
            c = c + z_coef[r] * (z_t[r] - s_t)
        q.mul_(c)
    grad.scatter_add_(1, t, wg_t)
    s_t = torch.log(q_t)
    loss = weighted(ew, term.value(s_t, one))
    if opts.z_loss:
        loss = loss + torch.where(valid, opts.z_loss * (z_t - s_t) ** 2, torch.zeros_like(loss))
    idx = _imprecise_rows(q_t)
    if idx is not None:
        x = z.index_select(0, idx)  # a copy: recomputed in place by the four-pass route
        exact, g = _fast_chunk(x, t[idx], ew[idx], valid[idx], scale, opts, x)
        grad.index_copy_(0, idx, g)
        loss.index_copy_(0, idx, exact.unsqueeze(1))
    return loss.squeeze(1)


def _linear_chunk(
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

    stats: _RowStats
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
    stats = _row_stats(x, out if separate else None, t)
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


def _full_chunk(
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
    stats = _row_stats(x, None)
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


def reduction_scale(targets: Targets, reduction: str, dtype: torch.dtype) -> Tensor:
    """The factor each element's gradient gets from the reduction (a 0-dim tensor)."""
    if reduction == "mean":
        denom = targets.denominator.to(dtype)
        # All targets ignored / all weights zero: loss 0 and zero gradient (PyTorch: NaN).
        return divide_or_zero(torch.ones_like(denom), denom)
    return torch.ones((), dtype=dtype, device=targets.valid.device)


def forward_pass(
    z: Tensor, targets: Targets, opts: EngineOptions, want_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Chunked loss per element ``(N, D)`` and gradient ``(N, K, D)`` (or ``None``).

    ``z`` is the ``(N, K, D)`` view of the contiguous logits.
    """
    cdt = compute_dtype(z.dtype)
    grad = None
    if want_grad:
        # A fresh buffer from PyTorch's allocator: THP_MEM_ALLOC_ENABLE=1 gives it huge pages.
        grad = z if opts.inplace_backward else torch.empty_like(z)
    scale = reduction_scale(targets, opts.reduction, cdt)
    if z.numel() == 0:  # no logits (N, C or a spatial size is 0): every loss is 0
        return torch.zeros(z.shape[0], z.shape[2], dtype=cdt, device=z.device), grad
    if grad is not None and opts.softmax_rows(z, targets):
        losses = _fast_softmax_rows(z.squeeze(2), targets, scale, opts, grad.squeeze(2))
        return losses.unsqueeze(1), grad
    return _chunked_pass(z, targets, opts, scale, grad), grad


def _chunked_pass(
    z: Tensor, targets: Targets, opts: EngineOptions, scale: Tensor, grad: Tensor | None
) -> Tensor:
    """Losses ``(N, D)`` chunk by chunk, the gradient into ``grad`` when it is given."""
    n, k, d = z.shape
    cdt = compute_dtype(z.dtype)
    want_grad = grad is not None
    losses = torch.empty(n, d, dtype=cdt, device=z.device)
    fast = opts.fast_path(targets)
    linear = targets.index is not None and opts.term.linear_in_target

    # (N, K) logits are computed on 2-D chunks: ops on (R, K, 1) views measured ~10x slower.
    def view(a: Tensor) -> Tensor:
        return a.squeeze(2) if d == 1 else a

    mult = _class_multiplier(opts, k, cdt, z.device)
    mult = view(mult) if mult is not None else None
    for rows, cols in iter_chunks(n, k, d):
        x = view(z[rows, :, cols]).to(cdt)
        g_out = view(grad[rows, :, cols]) if grad is not None else None
        # e = exp(z - m) may be written straight into the gradient buffer when dtypes agree.
        out = g_out if (g_out is not None and x.dtype == z.dtype) else None
        valid = view(targets.valid[rows, cols].unsqueeze(1))
        if fast or linear:
            t = view(targets.index[rows, cols].unsqueeze(1))
            ew = view(targets.elem_weight[rows, cols].unsqueeze(1)).to(cdt)
        if fast:
            if want_grad and out is None:
                out = torch.empty_like(x)
            loss, g = _fast_chunk(x, t, ew, valid, scale, opts, out if want_grad else None)
        elif linear:
            if want_grad and out is None:
                out = torch.empty_like(x)
            loss, g = _linear_chunk(x, t, ew, valid, scale, opts, mult, out if want_grad else None)
        else:
            p = smoothed_target_chunk(
                targets, rows, cols, k, opts.label_smoothing, opts.smoothing, cdt
            )
            loss, g = _full_chunk(x, view(p), valid, scale, opts, mult, want_grad)
        losses[rows, cols] = loss.reshape(losses[rows, cols].shape)
        if g is not None and g.data_ptr() != g_out.data_ptr():
            g_out.copy_(g)
    return losses


def _class_multiplier(
    opts: EngineOptions, k: int, dtype: torch.dtype, device: torch.device
) -> Tensor | None:
    """``w_k * class_scale_k`` as ``(1, K, 1)`` for the full path, or ``None``."""
    mult = None
    for vec in (opts.weight, opts.class_scale):
        if vec is not None:
            v = vec.to(dtype=dtype, device=device).view(1, k, 1)
            mult = v if mult is None else mult * v
    return mult


def reduce_losses(losses: Tensor, targets: Targets, reduction: str) -> Tensor:
    """Apply ``reduction`` to per-element losses ``(N, D)``."""
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    denom = targets.denominator.to(total.dtype)
    return divide_or_zero(total, denom)


def differentiable_loss(z: Tensor, targets: Targets, opts: EngineOptions) -> Tensor:
    """The same loss written from ``F`` with autograd-differentiable ops (no custom gradient).

    Used when a probability target requires grad and for double backward
    (``create_graph=True``); materialises ``(N, K, D)`` temporaries, so it is slower.
    Returns the per-element losses ``(N, D)``.
    """
    n, k, d = z.shape
    x = z.to(compute_dtype(z.dtype))
    # s = (z - m) - log d (exact near 1e4); m is a constant shift (detached), 0 for a fully
    # masked row so that its s stays -inf instead of NaN. lse = m + log d (-inf there).
    m = x.detach().amax(dim=1, keepdim=True)
    m = torch.where(torch.isinf(m) & (m < 0), torch.zeros_like(m), m)
    shifted = x - m
    log_d = torch.logsumexp(shifted, dim=1, keepdim=True)
    lse = m + log_d
    s = shifted - torch.where(torch.isinf(log_d) & (log_d < 0), torch.zeros_like(log_d), log_d)
    p = smoothed_target_chunk(
        targets, slice(None), slice(None), k, opts.label_smoothing, opts.smoothing, x.dtype
    )
    f = value_where_target(opts.term, s, p)
    mult = _class_multiplier(opts, k, x.dtype, x.device)
    if mult is not None:
        f = f * mult
    loss = f.sum(dim=1)
    if opts.z_loss:
        loss = loss + opts.z_loss * lse.squeeze(1) ** 2
    return torch.where(targets.valid, loss, torch.zeros_like(loss))


@dataclass(frozen=True)
class _MulticlassProblem:
    """One multiclass engine call (see :class:`crossent._autograd.Problem`)."""

    targets: Targets
    opts: EngineOptions

    @property
    def reduction(self) -> str:
        return self.opts.reduction

    @property
    def inplace_backward(self) -> bool:
        return self.opts.inplace_backward

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        losses, grad = forward_pass(z, self.targets, self.opts, want_grad)
        return reduce_losses(losses, self.targets, self.reduction), grad

    def differentiable(self, z: Tensor) -> Tensor:
        return reduce_losses(
            differentiable_loss(z, self.targets, self.opts), self.targets, self.reduction
        )

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        return grad_output.reshape(grad.shape[0], 1, grad.shape[2])


def check_log_target(term: Term, probs: Tensor | None) -> None:
    """A term that reads ``log P`` (reverse CE) needs probability targets ``>= 0``."""
    if probs is None or not term.takes_log_of_target() or not config.validate_args():
        return
    if bool((probs < 0).any()):
        raise _checks.fail("target", "probabilities >= 0 (this loss reads log P)", probs)


def term_loss(
    input: Tensor,
    target: Tensor,
    term: Term,
    *,
    weight: Tensor | None = None,
    class_scale: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    inplace_backward: bool = False,
) -> Tensor:
    """Any per-class term's loss from logits, with PyTorch's target and reduction semantics.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)`` (integer), or
            probabilities shaped like ``input`` (float).
        term: the per-class term (:class:`crossent.terms.Term`).
        weight: class weights ``(C,)``; ``mean`` divides by the sum of the target classes'
            weights over non-ignored elements (PyTorch's weighted mean).
        class_scale: per-class multiplier ``(C,)`` of each element's loss that does *not*
            enter the mean's denominator (focal's ``alpha``); validated by the caller.
        ignore_index: class index whose elements contribute nothing (index targets only).
        reduction: ``"none" | "mean" | "sum"``.
        label_smoothing: ``eps`` in [0, 1].
        smoothing: ``"uniform"`` (``eps/K`` to every class) or ``"others"`` (``eps/(K-1)`` to
            every non-target class).
        z_loss: coefficient ``lam`` of ``lam * lse(z)^2`` added per element (unweighted).
        inplace_backward: write the gradient into ``input``'s storage.

    Returns:
        The reduced loss (float32 for half inputs), or per-element losses for ``"none"``.
    """
    input = check_input(input)
    reduction = _checks.check_reduction(reduction)
    z_loss = _checks.check_real("z_loss", z_loss, low=0.0)
    ignore_index = _checks.check_ignore_index(ignore_index)
    target = _checks.check_tensor("target", target)
    unbatched = input.dim() == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    k = input.shape[1]
    eps = check_smoothing(label_smoothing, smoothing, k)
    weight = _checks.check_class_weight(weight, k)
    inplace_backward = writes_in_place(input, inplace_backward)
    if inplace_backward and not input.is_contiguous():
        raise _checks.fail("input", "to be contiguous with inplace_backward=True", input)
    warn_if_probabilities(input)
    targets = prepare_targets(input, target, weight, class_scale, ignore_index, eps, smoothing)
    check_log_target(term, targets.probs)
    opts = EngineOptions(
        term,
        weight,
        class_scale,
        ignore_index,
        reduction,
        eps,
        smoothing,
        z_loss,
        inplace_backward,
    )
    problem = _MulticlassProblem(targets, opts)
    z = input.contiguous().reshape(input.shape[0], k, math.prod(input.shape[2:]))
    if kernels.use_kernel(z, targets, opts):  # CUDA logits: the Triton kernel template
        loss = kernels.term_loss(z, targets, opts)
    else:
        loss = run(problem, z, targets.probs, weight, class_scale)
    if reduction == "none":
        loss = loss.reshape(input.shape[0], *input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss


def run(problem: Problem, z: Tensor, *others: Tensor | None) -> Tensor:
    """Dispatch one problem: differentiable fallback, analytic gradient, or loss only.

    ``others`` are the call's other tensor inputs (probability targets, class weights, ...).

    * one of ``others`` requires grad: the differentiable formula (gradients to all of them,
      as PyTorch gives them);
    * logits that require grad under grad mode: :class:`EngineFunction` (analytic gradient);
    * otherwise (``no_grad``, inference): the loss alone, no gradient work.
    """
    grad_mode = torch.is_grad_enabled()
    if config.transforms_active() or (
        grad_mode and any(t is not None and t.requires_grad for t in others)
    ):
        return problem.differentiable(z)
    if grad_mode and z.requires_grad:
        return EngineFunction.apply(z, problem)
    loss, _ = problem.compute(z.detach(), want_grad=False)
    return loss
