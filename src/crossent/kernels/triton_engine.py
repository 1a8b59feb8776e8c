r"""The term engine as one Triton kernel template (DESIGN §1, ``shared/GPU.md``).

For a row of logits ``z`` (``K`` classes), ``s = z - lse(z)``, ``q = e^s``, target ``P``,
class multipliers ``w`` and a term ``(F, G)`` from :mod:`crossent.kernels._terms_jit`:

.. math::

    \ell = \sum_k w_k F(s_k, P_k) + \lambda\,\mathrm{lse}^2, \qquad
    \frac{\partial \ell}{\partial z_j} = w_j G_j - q_j \Big(\sum_k w_k G_k
        - 2 \lambda\,\mathrm{lse}\Big).

One template, every term: ``TERM`` and the feature flags are ``tl.constexpr`` (F and G are
chosen at compile time), hyper-parameters are runtime scalars. Three modes:

* ``LOSS``: per-row loss and statistics ``(lse, S)`` (the forward pass, 1 read of the logits
  on the one-hot fast path);
* ``GRAD``: the gradient from the saved statistics with the upstream gradient folded in
  (the backward pass, 1 read + 1 write);
* ``FUSED``: loss and gradient in one launch, the gradient possibly written over the
  logits themselves (in-place mode and the fused linear + loss).

Two row layouts: a row that fits a ``BLOCK`` is loaded once and kept in registers (several
rows per program for small ``K``); a longer row is streamed in ``BLOCK`` pieces (online
softmax, Milakov & Gimelshein 2018), with the second read kept in L2 (eviction hints, the
second pass walks the row backwards, optionally a persistent grid). Offsets are int64;
arithmetic is float32; the target column of the one-hot fast path is formed as
``w_t G_t (1 - q_t)`` with ``1 - q_t = -expm1(s_t)`` in float32 (no cancellation when
``q_t -> 1``); a masked (``-inf``) class gets probability 0 and gradient 0.

Triton reads parameter annotations (only ``tl.constexpr`` changes compilation), so plain
arguments are annotated ``tl.tensor``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from crossent.kernels._terms_jit import linear_ab, one_minus_exp, term_fg

MODE_LOSS = 0
MODE_GRAD = 1
MODE_FUSED = 2
_LOSS = tl.constexpr(MODE_LOSS)
_GRAD = tl.constexpr(MODE_GRAD)
_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def row_offsets(rows: tl.tensor, D: tl.tensor, s_n: tl.tensor, s_d: tl.tensor) -> tl.tensor:
    """int64 offsets of flat rows ``r = n * D + d`` in an ``(N, K, D)`` tensor.

    Cast first: ``row * stride`` overflows int32 once ``N * K > 2^31`` (Triton issue 1058).
    """
    r = rows.to(tl.int64)
    n = r // D
    return n * s_n + (r - n * D) * s_d


@triton.jit
def _row_scale(
    rows: tl.tensor, rmask: tl.tensor, scale_ptr: tl.tensor, scale_mul: tl.tensor,
    ROWS: tl.constexpr, SCALE_MODE: tl.constexpr,
) -> tl.tensor:  # fmt: skip
    """The gradient factor of each row: a float, a 0-dim tensor or one value per row."""
    sc = tl.full([ROWS], 1.0, tl.float32) * scale_mul
    if SCALE_MODE == 1:
        sc = sc * tl.load(scale_ptr)
    elif SCALE_MODE == 2:
        sc = sc * tl.load(scale_ptr + rows, mask=rmask, other=0.0)
    return sc


@triton.jit
def _fast_row(
    z_t: tl.tensor, lse: tl.tensor, ew: tl.tensor, sc: tl.tensor, zl: tl.tensor,
    a0: tl.tensor, a1: tl.tensor, a2: tl.tensor, TERM: tl.constexpr, HAS_ZLOSS: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:  # fmt: skip
    """One-hot fast path: ``(loss, c, g_t)`` so that ``dl/dz_j = q_j c`` off the target and
    ``g_t`` at it. ``ew = w_t`` (0 where ignored), ``sc`` the gradient factor.
    """
    lse_safe = tl.where(lse == _NEG_INF, 0.0, lse)
    s_t = z_t - lse_safe
    q_t = tl.exp(s_t)
    f_t, g_t = term_fg(s_t, q_t, tl.full(s_t.shape, 1.0, tl.float32), a0, a1, a2, TERM)
    on = ew != 0.0
    loss = tl.where(on, ew * f_t, 0.0)
    wg = tl.where(on, ew * g_t, 0.0) * sc
    zc = tl.zeros_like(wg)
    if HAS_ZLOSS:
        loss += tl.where(on, zl * lse * lse, 0.0)
        zc = tl.where(on, 2.0 * zl * lse_safe * sc, 0.0)
    # dl/dz_j = q_j (zc - w_t G_t) + [j = t] w_t G_t ; at t: w_t G_t (1 - q_t) + q_t zc
    gt = wg * one_minus_exp(s_t) + q_t * zc
    return loss, zc - wg, gt


@triton.jit
def _full_elem(
    x: tl.tensor, lse_safe: tl.tensor, cols: tl.tensor, rmask: tl.tensor, cmask: tl.tensor,
    t: tl.tensor,
    p_ptr: tl.tensor, poff: tl.tensor, s_pk: tl.tensor, w_ptr: tl.tensor,
    on: tl.tensor, off: tl.tensor, p_mul: tl.tensor, p_add: tl.tensor,
    a0: tl.tensor, a1: tl.tensor, a2: tl.tensor, TERM: tl.constexpr, SOFT: tl.constexpr,
    VANISH: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_SMOOTH: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:  # fmt: skip
    """``(q, w F, w G)`` of a ``[ROWS, BLOCK]`` tile on the full path (0 outside ``K``)."""
    s = x - lse_safe[:, None]
    q = tl.exp(s)
    if SOFT:
        mask = rmask[:, None] & cmask[None, :]
        p = tl.load(p_ptr + poff[:, None] + cols[None, :] * s_pk, mask=mask, other=0.0)
        p = p.to(tl.float32)
        if HAS_SMOOTH:
            p = p * p_mul + p_add
    else:
        p = tl.where(cols[None, :] == t[:, None], on, off)
    f, g = term_fg(s, q, p, a0, a1, a2, TERM)
    if VANISH:
        f = tl.where(p == 0.0, 0.0, f)
        g = tl.where(p == 0.0, 0.0, g)
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0)[None, :]
        f = tl.where(w == 0.0, 0.0, f * w)
        g = g * w
    f = tl.where(cmask[None, :], f, 0.0)
    g = tl.where(cmask[None, :], g, 0.0)
    return q, f, g


@triton.jit
def _finish_full(
    loss: tl.tensor, srow: tl.tensor, lse: tl.tensor, zl: tl.tensor, valid: tl.tensor,
    HAS_ZLOSS: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:  # fmt: skip
    """Add the z-loss ``lam lse^2`` (and ``-2 lam lse`` to ``S``); zero ignored rows' loss."""
    if HAS_ZLOSS:
        loss += zl * lse * lse
        srow -= 2.0 * zl * tl.where(lse == _NEG_INF, 0.0, lse)
    return tl.where(valid, loss, 0.0), srow


@triton.jit
def _store_grad(
    out_ptr: tl.tensor, offs: tl.tensor, mask: tl.tensor, grad: tl.tensor, STREAM: tl.constexpr
) -> None:
    """Write a gradient tile in the output dtype (streaming stores for the long-row path)."""
    val = grad.to(out_ptr.dtype.element_ty)
    if STREAM:
        tl.store(out_ptr + offs, val, mask=mask, cache_modifier=".cs")
    else:
        tl.store(out_ptr + offs, val, mask=mask)


@triton.jit
def _on_chip_tile(
    tile, z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr, scale_ptr,
    R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
    a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
    TERM: tl.constexpr, MODE: tl.constexpr, SOFT: tl.constexpr, PATH: tl.constexpr,
    VANISH: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr, SCALE_MODE: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """``ROWS`` whole rows held in registers: one read and one write of the logits."""
    rows = tile * ROWS + tl.arange(0, ROWS)
    rmask = rows < R
    zoff = row_offsets(rows, D, s_zn, s_zd)
    cols = tl.arange(0, BLOCK)
    cmask = cols < K
    offs = zoff[:, None] + cols[None, :] * s_zk
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(z_ptr + offs, mask=mask, other=_NEG_INF).to(tl.float32)
    if SOFT:
        t = rows
        valid = rmask
    else:
        t = tl.load(tgt_ptr + rows, mask=rmask, other=-1)
        valid = t >= 0
    if MODE == _GRAD:
        lse = tl.load(stats_ptr + 2 * rows, mask=rmask, other=0.0)
        srow = tl.load(stats_ptr + 2 * rows + 1, mask=rmask, other=0.0)
    else:
        mx = tl.max(x, 1)
        ms = tl.where(mx == _NEG_INF, 0.0, mx)
        lse = ms + tl.log(tl.sum(tl.exp(x - ms[:, None]), 1))
    lse_safe = tl.where(lse == _NEG_INF, 0.0, lse)
    sc = _row_scale(rows, rmask, scale_ptr, scale_mul, ROWS, SCALE_MODE)
    if PATH == 0:
        ew = tl.load(ew_ptr + rows, mask=rmask, other=0.0)
        z_t = tl.load(z_ptr + zoff + tl.maximum(t, 0) * s_zk, mask=rmask, other=0.0)
        loss, coef, gt = _fast_row(z_t.to(tl.float32), lse, ew, sc, zl, a0, a1, a2, TERM, HAS_ZLOSS)
        q = tl.exp(x - lse_safe[:, None])
        grad = tl.where(cols[None, :] == t[:, None], gt[:, None], q * coef[:, None])
        srow = tl.zeros_like(lse)
    else:
        poff = row_offsets(rows, D, s_pn, s_pd)
        q, f, g = _full_elem(
            x, lse_safe, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
        )  # fmt: skip
        if MODE != _GRAD:
            loss, srow = _finish_full(tl.sum(f, 1), tl.sum(g, 1), lse, zl, valid, HAS_ZLOSS)
        # dl/dz_j = w_j G_j - q_j (sum_k w_k G_k - 2 lam lse)
        grad = (g - q * srow[:, None]) * tl.where(valid, sc, 0.0)[:, None]
    if MODE != _GRAD:
        tl.store(loss_ptr + rows, loss, mask=rmask)
        tl.store(stats_ptr + 2 * rows, lse, mask=rmask)
        tl.store(stats_ptr + 2 * rows + 1, srow, mask=rmask)
    if MODE != _LOSS:
        _store_grad(out_ptr, offs, mask, grad, False)


@triton.jit
def _target_p(
    rmask: tl.tensor, cols: tl.tensor, cmask: tl.tensor, t: tl.tensor, p_ptr: tl.tensor,
    poff: tl.tensor, s_pk: tl.tensor, on: tl.tensor, off: tl.tensor, p_mul: tl.tensor,
    p_add: tl.tensor, SOFT: tl.constexpr, HAS_SMOOTH: tl.constexpr,
) -> tl.tensor:  # fmt: skip
    """The target ``P`` of a ``[ROWS, BLOCK]`` tile: smoothed one-hot or (smoothed) soft."""
    if SOFT:
        mask = rmask[:, None] & cmask[None, :]
        p = tl.load(p_ptr + poff[:, None] + cols[None, :] * s_pk, mask=mask, other=0.0)
        p = p.to(tl.float32)
        if HAS_SMOOTH:
            p = p * p_mul + p_add
    else:
        p = tl.where(cols[None, :] == t[:, None], on, off)
    return p


@triton.jit
def _soft_linear(
    x: tl.tensor, ms_old: tl.tensor, ms_new: tl.tensor, p: tl.tensor, cols: tl.tensor,
    cmask: tl.tensor, w_ptr: tl.tensor, acc_a: tl.tensor, acc_b: tl.tensor, acc_bz: tl.tensor,
    TERM: tl.constexpr, HAS_WEIGHT: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:  # fmt: skip
    """Add a tile to ``A = sum w a``, ``B = sum w b``, ``Bz = sum w b (z - m)`` (lanes)."""
    a, b = linear_ab(p, TERM)
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0)[None, :]
        a = a * w
        b = b * w
    a = tl.where(cmask[None, :], a, 0.0)
    b = tl.where(cmask[None, :], b, 0.0)
    # re-reference the running sum of b (z - m) to the new max, then add this tile
    acc_bz += tl.where(acc_b == 0.0, 0.0, acc_b * (ms_old - ms_new))
    acc_bz += tl.where(b == 0.0, 0.0, b * (x - ms_new))
    return acc_a + a, acc_b + b, acc_bz


@triton.jit
def _stream_stats(
    z_ptr, zoff, s_zk, K, rmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
    TERM: tl.constexpr, SOFT: tl.constexpr, PATH: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr, LANE: tl.constexpr,
):  # fmt: skip
    """Pass 1 over long rows: online max and sum of exponentials (Milakov & Gimelshein).

    ``LANE``: each lane keeps its own running max ``m`` and ``d = sum e^(z - m)``, combined
    once at the end (no cross-warp reduction in the loop, ``e^-|z - m|`` serves both the
    rescale and the new term); else one max and sum per row, reduced every tile.
    ``PATH == 1`` also gathers what a term linear in ``s`` needs for its loss
    ``A - Bz + B log(sum e^(z - m))``: for soft targets ``A = sum w a``, ``B = sum w b``,
    ``Bz = sum w b (z - m)``; for a smoothed one-hot target (cross-entropy) only
    ``sum w z`` and ``sum w`` (``P = off + (on - off) onehot(t)`` is known).
    Returns the row max, ``sum e^(z - max)`` and per-row ``(A, B, Bz)`` or
    ``(0, sum w, sum w z)``.
    """
    if LANE:
        m = tl.full([ROWS, BLOCK], _NEG_INF, tl.float32)
        d = tl.zeros([ROWS, BLOCK], tl.float32)
    else:
        m = tl.full([ROWS], _NEG_INF, tl.float32)
        d = tl.zeros([ROWS], tl.float32)
    acc_a = tl.zeros([ROWS, BLOCK], tl.float32)
    acc_b = tl.zeros([ROWS, BLOCK], tl.float32)
    acc_bz = tl.zeros([ROWS, BLOCK], tl.float32)
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        cmask = cols < K
        x = tl.load(
            z_ptr + zoff[:, None] + cols[None, :] * s_zk,
            mask=rmask[:, None] & cmask[None, :],
            other=_NEG_INF,
            eviction_policy="evict_last",
        ).to(tl.float32)
        if LANE:
            up = x > m
            # e^-|x - m| (0 when either is -inf); d <- d e + 1 if x is the new max, else d + e
            gap = tl.where(up, m - x, x - m)
            e = tl.exp(tl.where(gap != gap, _NEG_INF, gap))
            d = tl.where(up, d * e + 1.0, d + e)
            m_new = tl.maximum(m, x)
            ms_old = tl.where(m == _NEG_INF, 0.0, m)
            ms_new = tl.where(m_new == _NEG_INF, 0.0, m_new)
        else:
            m_new = tl.maximum(m, tl.max(x, 1))
            ms_old = tl.where(m == _NEG_INF, 0.0, m)[:, None]
            ms_new = tl.where(m_new == _NEG_INF, 0.0, m_new)
            d = d * tl.exp(m - ms_new) + tl.sum(tl.exp(x - ms_new[:, None]), 1)
            ms_new = ms_new[:, None]
        if PATH == 1:
            if SOFT:
                p = _target_p(
                    rmask, cols, cmask, t, p_ptr, poff, s_pk, on, off, p_mul, p_add, SOFT,
                    HAS_SMOOTH,
                )  # fmt: skip
                acc_a, acc_b, acc_bz = _soft_linear(
                    x, ms_old, ms_new, p, cols, cmask, w_ptr, acc_a, acc_b, acc_bz, TERM,
                    HAS_WEIGHT,
                )  # fmt: skip
            elif HAS_WEIGHT:
                w = tl.load(w_ptr + cols, mask=cmask, other=0.0)[None, :]
                acc_b += w
                acc_bz += tl.where(w == 0.0, 0.0, w * x)
            else:
                acc_b += tl.where(cmask[None, :], 1.0, 0.0)
                acc_bz += tl.where(cmask[None, :], x, 0.0)
        m = m_new
    if LANE:
        mx = tl.max(m, 1)
        ms = tl.where(mx == _NEG_INF, 0.0, mx)
        dsum = tl.sum(d * tl.exp(m - ms[:, None]), 1)
        lane_ms = tl.where(m == _NEG_INF, 0.0, m)
    else:
        mx = m
        ms = tl.where(mx == _NEG_INF, 0.0, mx)
        dsum = d
        lane_ms = ms[:, None]
    if SOFT:
        acc_bz += tl.where(acc_b == 0.0, 0.0, acc_b * (lane_ms - ms[:, None]))
    return mx, dsum, tl.sum(acc_a, 1), tl.sum(acc_b, 1), tl.sum(acc_bz, 1)


@triton.jit
def _stream_full_sums(
    z_ptr, zoff, s_zk, K, rmask, lse_safe, t, p_ptr, poff, s_pk, w_ptr,
    on, off, p_mul, p_add, a0, a1, a2,
    TERM: tl.constexpr, SOFT: tl.constexpr, VANISH: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Pass 1b (terms not linear in ``s``): ``sum_k w_k F_k`` and ``sum_k w_k G_k``."""
    acc_f = tl.zeros([ROWS], tl.float32)
    acc_g = tl.zeros([ROWS], tl.float32)
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        cmask = cols < K
        x = tl.load(
            z_ptr + zoff[:, None] + cols[None, :] * s_zk,
            mask=rmask[:, None] & cmask[None, :],
            other=_NEG_INF,
            eviction_policy="evict_last",
        ).to(tl.float32)
        _, f, g = _full_elem(
            x, lse_safe, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
        )  # fmt: skip
        acc_f += tl.sum(f, 1)
        acc_g += tl.sum(g, 1)
    return acc_f, acc_g


@triton.jit
def _stream_tile(
    tile, z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr, scale_ptr,
    R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
    a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
    TERM: tl.constexpr, MODE: tl.constexpr, SOFT: tl.constexpr, PATH: tl.constexpr,
    VANISH: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr, SCALE_MODE: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
    REVERSE: tl.constexpr, LANE: tl.constexpr,
):  # fmt: skip
    """``ROWS`` long rows streamed in ``BLOCK`` pieces: statistics, then the gradient."""
    rows = tile * ROWS + tl.arange(0, ROWS)
    rmask = rows < R
    zoff = row_offsets(rows, D, s_zn, s_zd)
    poff = row_offsets(rows, D, s_pn, s_pd)
    if SOFT:
        t = rows
        valid = rmask
    else:
        t = tl.load(tgt_ptr + rows, mask=rmask, other=-1)
        valid = t >= 0
    sc = _row_scale(rows, rmask, scale_ptr, scale_mul, ROWS, SCALE_MODE)
    if MODE == _GRAD:
        lse = tl.load(stats_ptr + 2 * rows, mask=rmask, other=0.0)
        srow = tl.load(stats_ptr + 2 * rows + 1, mask=rmask, other=0.0)
        lse_safe = tl.where(lse == _NEG_INF, 0.0, lse)
    else:
        m, dsum, acc_a, acc_b, acc_bz = _stream_stats(
            z_ptr, zoff, s_zk, K, rmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            TERM, SOFT, PATH, HAS_WEIGHT, HAS_SMOOTH, ROWS, BLOCK, LANE,
        )  # fmt: skip
        ms = tl.where(m == _NEG_INF, 0.0, m)
        lse = ms + tl.log(dsum)
        lse_safe = tl.where(lse == _NEG_INF, 0.0, lse)
        if PATH == 1:
            if not SOFT:
                # smoothed one-hot CE: B = off W + (on - off) w_t,
                # Bz = off (sum w z - W m) + (on - off) w_t (z_t - m)
                tsafe = tl.maximum(t, 0)
                z_t = tl.load(z_ptr + zoff + tsafe * s_zk, mask=rmask, other=0.0).to(tl.float32)
                w_t = tl.full([ROWS], 1.0, tl.float32)
                if HAS_WEIGHT:
                    w_t = tl.load(w_ptr + tsafe, mask=rmask, other=0.0)
                big_w = acc_b
                acc_b = off * big_w + (on - off) * w_t
                acc_bz = off * (acc_bz - big_w * ms) + tl.where(
                    w_t == 0.0, 0.0, (on - off) * w_t * (z_t - ms)
                )
            # sum_k w_k (a_k - b_k s_k) = A - sum w b (z - m) + B (lse - m)
            loss = acc_a - acc_bz + tl.where(dsum == 0.0, 0.0, acc_b * tl.log(dsum))
            loss, srow = _finish_full(loss, -acc_b, lse, zl, valid, HAS_ZLOSS)
        elif PATH == 2:
            loss, srow = _stream_full_sums(
                z_ptr, zoff, s_zk, K, rmask, lse_safe, t, p_ptr, poff, s_pk, w_ptr,
                on, off, p_mul, p_add, a0, a1, a2,
                TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH, ROWS, BLOCK,
            )  # fmt: skip
            loss, srow = _finish_full(loss, srow, lse, zl, valid, HAS_ZLOSS)
    if PATH == 0:
        ew = tl.load(ew_ptr + rows, mask=rmask, other=0.0)
        z_t = tl.load(z_ptr + zoff + tl.maximum(t, 0) * s_zk, mask=rmask, other=0.0)
        loss, coef, gt = _fast_row(z_t.to(tl.float32), lse, ew, sc, zl, a0, a1, a2, TERM, HAS_ZLOSS)
        srow = tl.zeros_like(lse)
    if MODE != _GRAD:
        tl.store(loss_ptr + rows, loss, mask=rmask)
        tl.store(stats_ptr + 2 * rows, lse, mask=rmask)
        tl.store(stats_ptr + 2 * rows + 1, srow, mask=rmask)
    if MODE != _LOSS:
        vsc = tl.where(valid, sc, 0.0)
        n_blocks = tl.cdiv(K, BLOCK)
        for i in range(0, n_blocks):
            if REVERSE:
                # the last pieces read in pass 1 are the likeliest still in L2
                start = (n_blocks - 1 - i) * BLOCK
            else:
                start = i * BLOCK
            cols = start + tl.arange(0, BLOCK)
            cmask = cols < K
            offs = zoff[:, None] + cols[None, :] * s_zk
            mask = rmask[:, None] & cmask[None, :]
            x = tl.load(z_ptr + offs, mask=mask, other=_NEG_INF, eviction_policy="evict_first")
            x = x.to(tl.float32)
            if PATH == 0:
                q = tl.exp(x - lse_safe[:, None])
                grad = tl.where(cols[None, :] == t[:, None], gt[:, None], q * coef[:, None])
            else:
                q, _, g = _full_elem(
                    x, lse_safe, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul,
                    p_add, a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
                )  # fmt: skip
                grad = (g - q * srow[:, None]) * vsc[:, None]
            _store_grad(out_ptr, offs, mask, grad, True)


@triton.jit
def loss_kernel(
    z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr, scale_ptr,
    R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
    a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
    TERM: tl.constexpr, MODE: tl.constexpr, SOFT: tl.constexpr, PATH: tl.constexpr,
    VANISH: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr, SCALE_MODE: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
    ON_CHIP: tl.constexpr, PERSISTENT: tl.constexpr, REVERSE: tl.constexpr, LANE: tl.constexpr,
):  # fmt: skip
    """The template: tiles of ``ROWS`` rows, one per program or strided over a persistent grid.

    Args (pointers): logits ``z``, gradient output ``out`` (may be ``z``), class indices
    ``tgt`` (int64, -1 where ignored) or soft targets ``p``, per-row weights ``ew = w_t``
    (fast path), per-class multipliers ``w``, per-row ``loss`` (fp32), ``stats`` ``(R, 2)``
    fp32 ``(lse, S)``, gradient factor ``scale``. Shapes: ``R = N * D`` rows of ``K``
    classes with strides ``(s_zn, s_zd, s_zk)`` (targets ``(s_pn, s_pd, s_pk)``).
    Scalars: term parameters ``a0, a1, a2``; smoothed one-hot levels ``on, off``; soft-target
    smoothing ``p * p_mul + p_add``; z-loss ``zl``; gradient factor ``scale_mul``.
    ``PATH``: 0 one-hot fast path, 1 full path of a term linear in ``s``, 2 full path.
    """
    pid = tl.program_id(0)
    n_tiles = tl.cdiv(R, ROWS)
    if PERSISTENT:
        for tile in range(pid, n_tiles, tl.num_programs(0)):
            _stream_tile(
                tile, z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr,
                scale_ptr, R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
                a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
                TERM, MODE, SOFT, PATH, VANISH, HAS_WEIGHT, HAS_SMOOTH, HAS_ZLOSS, SCALE_MODE,
                ROWS, BLOCK, REVERSE, LANE,
            )  # fmt: skip
    elif ON_CHIP:
        _on_chip_tile(
            pid, z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr, scale_ptr,
            R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
            a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
            TERM, MODE, SOFT, PATH, VANISH, HAS_WEIGHT, HAS_SMOOTH, HAS_ZLOSS, SCALE_MODE,
            ROWS, BLOCK,
        )  # fmt: skip
    else:
        _stream_tile(
            pid, z_ptr, out_ptr, tgt_ptr, p_ptr, ew_ptr, w_ptr, loss_ptr, stats_ptr, scale_ptr,
            R, K, D, s_zn, s_zd, s_zk, s_pn, s_pd, s_pk,
            a0, a1, a2, on, off, p_mul, p_add, zl, scale_mul,
            TERM, MODE, SOFT, PATH, VANISH, HAS_WEIGHT, HAS_SMOOTH, HAS_ZLOSS, SCALE_MODE,
            ROWS, BLOCK, REVERSE, LANE,
        )  # fmt: skip


@triton.jit
def rescale_kernel(
    g_ptr, gl_ptr, base_ptr, R, K, D, s_n, s_d, s_k, s_gl, BLOCK: tl.constexpr
):  # fmt: skip
    """Scale row ``r`` of a stored gradient by ``gl[r] / base`` unless that factor is 1.

    The in-place mode forms the gradient in the forward pass with the reduction's factor
    ``base`` already applied; backward receives ``gl[r]`` (``grad_output`` times ``base``).
    For the usual ``loss.backward()`` the factor is exactly 1 and the row is not touched:
    the check runs on the device, so backward never synchronises with the host.
    """
    row = tl.program_id(0).to(tl.int64)
    base = tl.load(base_ptr)
    factor = tl.load(gl_ptr + row * s_gl) / tl.where(base == 0.0, 1.0, base)
    if (factor != 1.0) & (base != 0.0):
        off = row_offsets(row, D, s_n, s_d)
        for start in range(0, K, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < K
            g = tl.load(g_ptr + off + cols * s_k, mask=mask, other=0.0).to(tl.float32)
            tl.store(g_ptr + off + cols * s_k, (g * factor).to(g_ptr.dtype.element_ty), mask=mask)
