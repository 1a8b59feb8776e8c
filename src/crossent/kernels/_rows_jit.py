"""Row-level pieces of the kernel template shared by both row layouts (see triton_engine).

Triton reads parameter annotations (only ``tl.constexpr`` changes compilation), so plain
arguments are annotated ``tl.tensor``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from crossent.kernels._terms_jit import one_minus_exp, term_fg

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
def col_offsets(cols: tl.tensor, s_k: tl.tensor) -> tl.tensor:
    """int64 offsets of classes ``cols`` at stride ``s_k`` (``K * s_k`` may pass 2^31)."""
    return cols.to(tl.int64) * s_k


@triton.jit
def safe_log_d(ld: tl.tensor) -> tl.tensor:
    """``log d`` of a row, 0 for a fully masked one (``d = 0``, ``log d = -inf``).

    Rows are described by their max ``m`` (0 for a fully masked row) and
    ``log d = log sum e^(z - m)``, and ``s = (z - m) - log d`` is formed as ``log_softmax``
    does: ``z - lse`` would round ``s`` to the ulp of ``lse`` (~1e-3 at ``lse = 1e4``). With
    the safe ``log d`` a fully masked row gets ``s = -inf``, never NaN.
    """
    return tl.where(ld == _NEG_INF, 0.0, ld)


@triton.jit
def row_scale(
    rows: tl.tensor,
    rmask: tl.tensor,
    scale_ptr: tl.tensor,
    scale_mul: tl.tensor,
    ROWS: tl.constexpr,
    SCALE_MODE: tl.constexpr,
) -> tl.tensor:
    """The gradient factor of each row: a float, a 0-dim tensor or one value per row."""
    sc = tl.full([ROWS], 1.0, tl.float32) * scale_mul
    if SCALE_MODE == 1:
        sc = sc * tl.load(scale_ptr)
    elif SCALE_MODE == 2:
        sc = sc * tl.load(scale_ptr + rows, mask=rmask, other=0.0)
    return sc


@triton.jit
def fast_row(
    z_t: tl.tensor,
    m: tl.tensor,
    ld: tl.tensor,
    ew: tl.tensor,
    valid: tl.tensor,
    sc: tl.tensor,
    zl: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    TERM: tl.constexpr,
    HAS_ZLOSS: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """One-hot fast path: ``(loss, c, g_t)``, the gradient ``q_j c`` off the target, ``g_t`` on it.

    ``m, ld``: the row max and ``log d`` (see :func:`safe_log_d`), ``s_t = (z_t - m) - log d``
    and ``lse = m + log d`` (z-loss). ``ew = w_t`` (0 where ignored), ``valid`` false where
    ignored (the z-loss applies to every element that is not ignored, whatever its class
    weight), ``sc`` the gradient factor.
    """
    lds = safe_log_d(ld)
    s_t = (z_t - m) - lds
    q_t = tl.exp(s_t)
    f_t, g_t = term_fg(s_t, q_t, tl.full(s_t.shape, 1.0, tl.float32), a0, a1, a2, TERM)
    on = ew != 0.0
    loss = tl.where(on, ew * f_t, 0.0)
    wg = tl.where(on, ew * g_t, 0.0) * sc
    zc = tl.zeros_like(wg)
    if HAS_ZLOSS:
        lse = m + ld
        loss += tl.where(valid, zl * lse * lse, 0.0)
        zc = tl.where(valid, 2.0 * zl * (m + lds) * sc, 0.0)
    # dl/dz_j = q_j (zc - w_t G_t) + [j = t] w_t G_t ; at t: w_t G_t (1 - q_t) + q_t zc
    gt = wg * one_minus_exp(s_t) + q_t * zc
    return loss, zc - wg, gt


@triton.jit
def full_elem(
    x: tl.tensor,
    m: tl.tensor,
    lds: tl.tensor,
    cols: tl.tensor,
    rmask: tl.tensor,
    cmask: tl.tensor,
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
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """``(q, w F, w G)`` of a ``[ROWS, BLOCK]`` tile on the full path (0 outside ``K``).

    ``s = (x - m) - lds`` from the row max ``m`` and the safe ``log d`` (:func:`safe_log_d`).
    """
    s = (x - m[:, None]) - lds[:, None]
    q = tl.exp(s)
    if SOFT:
        mask = rmask[:, None] & cmask[None, :]
        poffs = poff[:, None] + col_offsets(cols, s_pk)[None, :]
        p = tl.load(p_ptr + poffs, mask=mask, other=0.0).to(tl.float32)
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
def finish_full(
    loss: tl.tensor,
    srow: tl.tensor,
    lse: tl.tensor,
    zl: tl.tensor,
    valid: tl.tensor,
    HAS_ZLOSS: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:
    """Add the z-loss ``lam lse^2`` (and ``-2 lam lse`` to ``S``); zero ignored rows' loss."""
    if HAS_ZLOSS:
        loss += zl * lse * lse
        srow -= 2.0 * zl * tl.where(lse == _NEG_INF, 0.0, lse)
    return tl.where(valid, loss, 0.0), srow


@triton.jit
def store_grad(
    out_ptr: tl.tensor, offs: tl.tensor, mask: tl.tensor, grad: tl.tensor, STREAM: tl.constexpr
) -> None:
    """Write a gradient tile in the output dtype (streaming stores for the long-row path)."""
    val = grad.to(out_ptr.dtype.element_ty)
    if STREAM:
        tl.store(out_ptr + offs, val, mask=mask, cache_modifier=".cs")
    else:
        tl.store(out_ptr + offs, val, mask=mask)
