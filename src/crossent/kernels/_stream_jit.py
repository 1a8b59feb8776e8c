"""The streamed row layout of the kernel template: rows longer than one tile.

Pass 1 gathers the row's statistics (online softmax), pass 1b (terms not linear in ``s``)
the sums of ``w F`` and ``w G``, pass 2 writes the gradient. See triton_engine.

Triton reads parameter annotations (only ``tl.constexpr`` changes compilation), so plain
arguments are annotated ``tl.tensor``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from crossent.kernels._rows_jit import col_offsets, full_elem, store_grad
from crossent.kernels._terms_jit import linear_ab

_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def _target_p(
    rmask: tl.tensor,
    cols: tl.tensor,
    cmask: tl.tensor,
    t: tl.tensor,
    p_ptr: tl.tensor,
    poff: tl.tensor,
    s_pk: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    SOFT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
) -> tl.tensor:
    """The target ``P`` of a ``[ROWS, BLOCK]`` tile: smoothed one-hot or (smoothed) soft."""
    if SOFT:
        mask = rmask[:, None] & cmask[None, :]
        poffs = poff[:, None] + col_offsets(cols, s_pk)[None, :]
        p = tl.load(p_ptr + poffs, mask=mask, other=0.0).to(tl.float32)
        if HAS_SMOOTH:
            p = p * p_mul + p_add
    else:
        p = tl.where(cols[None, :] == t[:, None], on, off)
    return p


@triton.jit
def _soft_linear(
    x: tl.tensor,
    ms_old: tl.tensor,
    ms_new: tl.tensor,
    p: tl.tensor,
    cols: tl.tensor,
    cmask: tl.tensor,
    w_ptr: tl.tensor,
    acc_a: tl.tensor,
    acc_b: tl.tensor,
    acc_bz: tl.tensor,
    TERM: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
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
def stream_stats(
    z_ptr: tl.tensor,
    zoff: tl.tensor,
    s_zk: tl.tensor,
    K: tl.tensor,
    rmask: tl.tensor,
    t: tl.tensor,
    p_ptr: tl.tensor,
    poff: tl.tensor,
    s_pk: tl.tensor,
    w_ptr: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    TERM: tl.constexpr,
    SOFT: tl.constexpr,
    PATH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    LANE: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor, tl.tensor]:
    """Pass 1 over long rows: online max and sum of exponentials (Milakov & Gimelshein).

    ``LANE``: each lane keeps its own running max ``m`` and ``d = sum e^(z - m)``, combined
    once at the end (no cross-warp reduction in the loop, ``e^-|z - m|`` serves both the
    rescale and the new term); else one max and sum per row, reduced every tile.
    ``PATH == 1`` also gathers what a term linear in ``s`` needs for its loss
    ``sum w (a - b s) = A - Bz + B log d``: for soft targets ``A = sum w a``, ``B = sum w b``,
    ``Bz = sum w b (z - m)``; for a smoothed one-hot target only ``sum w`` and ``sum w z``
    (:func:`onehot_linear_sums` completes them, ``P = off + (on - off) onehot(t)`` is known).
    Returns the row max ``m`` (0 for a fully masked row), ``log d = log sum e^(z - m)``
    (``-inf`` there) and per-row ``(A, B, Bz)`` or ``(0, sum w, sum w z)``.
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
            z_ptr + zoff[:, None] + col_offsets(cols, s_zk)[None, :],
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
    return ms, tl.log(dsum), tl.sum(acc_a, 1), tl.sum(acc_b, 1), tl.sum(acc_bz, 1)


@triton.jit
def stream_full_sums(
    z_ptr: tl.tensor,
    zoff: tl.tensor,
    s_zk: tl.tensor,
    K: tl.tensor,
    rmask: tl.tensor,
    m: tl.tensor,
    lds: tl.tensor,
    t: tl.tensor,
    p_ptr: tl.tensor,
    poff: tl.tensor,
    s_pk: tl.tensor,
    w_ptr: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    TERM: tl.constexpr,
    SOFT: tl.constexpr,
    VANISH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:
    """Pass 1b (terms not linear in ``s``): ``sum_k w_k F_k`` and ``sum_k w_k G_k``.

    ``m``, ``lds``: the row max and safe ``log d`` (``s = (z - m) - log d``).
    """
    acc_f = tl.zeros([ROWS], tl.float32)
    acc_g = tl.zeros([ROWS], tl.float32)
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        cmask = cols < K
        x = tl.load(
            z_ptr + zoff[:, None] + col_offsets(cols, s_zk)[None, :],
            mask=rmask[:, None] & cmask[None, :],
            other=_NEG_INF,
            eviction_policy="evict_last",
        ).to(tl.float32)
        _, f, g = full_elem(
            x, m, lds, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
        )  # fmt: skip
        acc_f += tl.sum(f, 1)
        acc_g += tl.sum(g, 1)
    return acc_f, acc_g


@triton.jit
def onehot_linear_sums(
    z_ptr: tl.tensor,
    zoff: tl.tensor,
    s_zk: tl.tensor,
    rmask: tl.tensor,
    t: tl.tensor,
    w_ptr: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    ms: tl.tensor,
    big_w: tl.tensor,
    swz: tl.tensor,
    TERM: tl.constexpr,
    ROWS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """``(A, B, Bz)`` of a term linear in ``s`` and a smoothed one-hot target.

    From ``W = sum w`` and ``sum w z``: ``P`` takes two values, so ``(a, b)`` does too
    (:func:`~crossent.kernels._terms_jit.linear_ab`: ``b = P`` for cross-entropy,
    ``b = e^P`` for forward KL), and with ``x_t = x(on) - x(off)``:
    ``A = a(off) W + a_t w_t``, ``B = b(off) W + b_t w_t`` and
    ``Bz = b(off) (sum w z - W m) + b_t w_t (z_t - m)``.
    """
    tsafe = tl.maximum(t, 0)
    z_t = tl.load(z_ptr + zoff + tsafe * s_zk, mask=rmask, other=0.0).to(tl.float32)
    w_t = tl.full([ROWS], 1.0, tl.float32)
    if HAS_WEIGHT:
        w_t = tl.load(w_ptr + tsafe, mask=rmask, other=0.0)
    a_off, b_off = linear_ab(tl.full([ROWS], 0.0, tl.float32) + off, TERM)
    a_on, b_on = linear_ab(tl.full([ROWS], 0.0, tl.float32) + on, TERM)
    big_a = a_off * big_w + (a_on - a_off) * w_t
    big_b = b_off * big_w + (b_on - b_off) * w_t
    bz = b_off * (swz - big_w * ms) + tl.where(w_t == 0.0, 0.0, (b_on - b_off) * w_t * (z_t - ms))
    return big_a, big_b, bz


@triton.jit
def stream_gradient(
    z_ptr: tl.tensor,
    out_ptr: tl.tensor,
    zoff: tl.tensor,
    s_zk: tl.tensor,
    K: tl.tensor,
    rmask: tl.tensor,
    t: tl.tensor,
    m: tl.tensor,
    lds: tl.tensor,
    srow: tl.tensor,
    coef: tl.tensor,
    gt: tl.tensor,
    vsc: tl.tensor,
    p_ptr: tl.tensor,
    poff: tl.tensor,
    s_pk: tl.tensor,
    w_ptr: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    TERM: tl.constexpr,
    SOFT: tl.constexpr,
    PATH: tl.constexpr,
    VANISH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    BLOCK: tl.constexpr,
    REVERSE: tl.constexpr,
) -> None:
    """Pass 2 over long rows: read each piece again (L2 when still there), write its gradient.

    ``q_j c`` (``g_t`` at the target) on the fast path, else ``(w_j G_j - q_j S) * vsc``;
    ``q = e^((z - m) - log d)`` from the row max ``m`` and the safe ``log d`` ``lds``.
    """
    n_blocks = tl.cdiv(K, BLOCK)
    for i in range(0, n_blocks):
        if REVERSE:
            # the last pieces read in pass 1 are the likeliest still in L2
            start = (n_blocks - 1 - i) * BLOCK
        else:
            start = i * BLOCK
        cols = start + tl.arange(0, BLOCK)
        cmask = cols < K
        offs = zoff[:, None] + col_offsets(cols, s_zk)[None, :]
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(z_ptr + offs, mask=mask, other=_NEG_INF, eviction_policy="evict_first")
        x = x.to(tl.float32)
        if PATH == 0:
            q = tl.exp((x - m[:, None]) - lds[:, None])
            grad = tl.where(cols[None, :] == t[:, None], gt[:, None], q * coef[:, None])
        else:
            q, _, g = full_elem(
                x, m, lds, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul,
                p_add, a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
            )  # fmt: skip
            grad = (g - q * srow[:, None]) * vsc[:, None]
        store_grad(out_ptr, offs, mask, grad, True)
