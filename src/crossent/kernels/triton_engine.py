r"""The term engine as one Triton kernel template (docs/design.md, "One engine" and "GPU kernels").

For a row of logits ``z`` (``K`` classes), ``s = (z - m) - log d`` (``m = max z``,
``d = sum e^(z - m)``, as ``log_softmax`` forms it), ``q = e^s``, target ``P``, class
multipliers ``w`` and a term ``(F, G)`` from :mod:`crossent.kernels._terms_jit`:

.. math::

    \ell = \sum_k w_k F(s_k, P_k) + \lambda\,\mathrm{lse}^2, \qquad
    \frac{\partial \ell}{\partial z_j} = w_j G_j - q_j \Big(\sum_k w_k G_k
        - 2 \lambda\,\mathrm{lse}\Big), \qquad \mathrm{lse} = m + \log d.

One template, every term: ``TERM`` and the feature flags are ``tl.constexpr`` (F and G are
chosen at compile time), hyper-parameters are runtime scalars. Three modes:

* ``LOSS``: per-row loss and statistics ``(m, log d, S)`` (the forward pass, 1 read of the
  logits on the one-hot fast path; ``m`` and ``log d`` are kept apart: ``z - lse`` in float32
  would round ``s`` to the ulp of ``lse``);
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

from crossent.kernels._rows_jit import (
    col_offsets,
    fast_row,
    finish_full,
    full_elem,
    row_offsets,
    row_scale,
    safe_log_d,
    store_grad,
)
from crossent.kernels._stream_jit import (
    onehot_linear_sums,
    stream_full_sums,
    stream_gradient,
    stream_stats,
)

MODE_LOSS = 0
MODE_GRAD = 1
MODE_FUSED = 2
_LOSS = tl.constexpr(MODE_LOSS)
_GRAD = tl.constexpr(MODE_GRAD)
_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def store_stats(
    stats_ptr: tl.tensor,
    rows: tl.tensor,
    rmask: tl.tensor,
    m: tl.tensor,
    ld: tl.tensor,
    srow: tl.tensor,
) -> None:
    """Save ``(m, log d, S)`` of each row (int64 ``rows``) for the backward pass.

    ``m`` (0 for a fully masked row) and ``log d`` stay apart so that backward forms
    ``s = (z - m) - log d`` exactly as the forward pass did; ``S = sum_k w_k G_k - 2 lam lse``.
    """
    tl.store(stats_ptr + 3 * rows, m, mask=rmask)
    tl.store(stats_ptr + 3 * rows + 1, ld, mask=rmask)
    tl.store(stats_ptr + 3 * rows + 2, srow, mask=rmask)


@triton.jit
def load_stats(
    stats_ptr: tl.tensor, rows: tl.tensor, rmask: tl.tensor
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """The ``(m, log d, S)`` :func:`store_stats` saved for these rows."""
    m = tl.load(stats_ptr + 3 * rows, mask=rmask, other=0.0)
    ld = tl.load(stats_ptr + 3 * rows + 1, mask=rmask, other=0.0)
    srow = tl.load(stats_ptr + 3 * rows + 2, mask=rmask, other=0.0)
    return m, ld, srow


@triton.jit
def _tile_rows(
    tile: tl.tensor,
    tgt_ptr: tl.tensor,
    R: tl.tensor,
    D: tl.tensor,
    s_zn: tl.tensor,
    s_zd: tl.tensor,
    SOFT: tl.constexpr,
    ROWS: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor, tl.tensor]:
    """A tile's rows (int64), their mask and offsets, targets and validity.

    Probability targets (``SOFT``) have no class index: ``t`` is the row itself, every row in
    range counts; class indices are ``-1`` past the end and ignored rows are negative.
    """
    rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    rmask = rows < R
    zoff = row_offsets(rows, D, s_zn, s_zd)
    if SOFT:
        t = rows
        valid = rmask
    else:
        t = tl.load(tgt_ptr + rows, mask=rmask, other=-1)
        valid = t >= 0
    return rows, rmask, zoff, t, valid


@triton.jit
def _on_chip_tile(
    tile: tl.tensor,
    z_ptr: tl.tensor,
    out_ptr: tl.tensor,
    tgt_ptr: tl.tensor,
    p_ptr: tl.tensor,
    ew_ptr: tl.tensor,
    w_ptr: tl.tensor,
    loss_ptr: tl.tensor,
    stats_ptr: tl.tensor,
    scale_ptr: tl.tensor,
    R: tl.tensor,
    K: tl.tensor,
    D: tl.tensor,
    s_zn: tl.tensor,
    s_zd: tl.tensor,
    s_zk: tl.tensor,
    s_pn: tl.tensor,
    s_pd: tl.tensor,
    s_pk: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    zl: tl.tensor,
    scale_mul: tl.tensor,
    TERM: tl.constexpr,
    MODE: tl.constexpr,
    SOFT: tl.constexpr,
    PATH: tl.constexpr,
    VANISH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
) -> None:
    """``ROWS`` whole rows held in registers: one read and one write of the logits."""
    rows, rmask, zoff, t, valid = _tile_rows(tile, tgt_ptr, R, D, s_zn, s_zd, SOFT, ROWS)
    cols = tl.arange(0, BLOCK)
    cmask = cols < K
    offs = zoff[:, None] + col_offsets(cols, s_zk)[None, :]
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(z_ptr + offs, mask=mask, other=_NEG_INF).to(tl.float32)
    if MODE == _GRAD:
        m, ld, srow = load_stats(stats_ptr, rows, rmask)
    else:
        mx = tl.max(x, 1)
        m = tl.where(mx == _NEG_INF, 0.0, mx)
        ld = tl.log(tl.sum(tl.exp(x - m[:, None]), 1))
    lds = safe_log_d(ld)
    sc = row_scale(rows, rmask, scale_ptr, scale_mul, ROWS, SCALE_MODE)
    if PATH == 0:
        ew = tl.load(ew_ptr + rows, mask=rmask, other=0.0)
        z_t = tl.load(z_ptr + zoff + tl.maximum(t, 0) * s_zk, mask=rmask, other=0.0)
        loss, coef, gt = fast_row(
            z_t.to(tl.float32), m, ld, ew, valid, sc, zl, a0, a1, a2, TERM, HAS_ZLOSS
        )
        q = tl.exp((x - m[:, None]) - lds[:, None])
        grad = tl.where(cols[None, :] == t[:, None], gt[:, None], q * coef[:, None])
        srow = tl.zeros_like(m)
    else:
        poff = row_offsets(rows, D, s_pn, s_pd)
        q, f, g = full_elem(
            x, m, lds, cols, rmask, cmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            a0, a1, a2, TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH,
        )  # fmt: skip
        if MODE != _GRAD:
            loss, srow = finish_full(tl.sum(f, 1), tl.sum(g, 1), m + ld, zl, valid, HAS_ZLOSS)
        # dl/dz_j = w_j G_j - q_j (sum_k w_k G_k - 2 lam lse)
        grad = (g - q * srow[:, None]) * tl.where(valid, sc, 0.0)[:, None]
    if MODE != _GRAD:
        tl.store(loss_ptr + rows, loss, mask=rmask)
        store_stats(stats_ptr, rows, rmask, m, ld, srow)
    if MODE != _LOSS:
        store_grad(out_ptr, offs, mask, grad, False)


@triton.jit
def _stream_tile(
    tile: tl.tensor,
    z_ptr: tl.tensor,
    out_ptr: tl.tensor,
    tgt_ptr: tl.tensor,
    p_ptr: tl.tensor,
    ew_ptr: tl.tensor,
    w_ptr: tl.tensor,
    loss_ptr: tl.tensor,
    stats_ptr: tl.tensor,
    scale_ptr: tl.tensor,
    R: tl.tensor,
    K: tl.tensor,
    D: tl.tensor,
    s_zn: tl.tensor,
    s_zd: tl.tensor,
    s_zk: tl.tensor,
    s_pn: tl.tensor,
    s_pd: tl.tensor,
    s_pk: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    zl: tl.tensor,
    scale_mul: tl.tensor,
    TERM: tl.constexpr,
    MODE: tl.constexpr,
    SOFT: tl.constexpr,
    PATH: tl.constexpr,
    VANISH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    REVERSE: tl.constexpr,
    LANE: tl.constexpr,
) -> None:
    """``ROWS`` long rows streamed in ``BLOCK`` pieces: statistics, then the gradient."""
    rows, rmask, zoff, t, valid = _tile_rows(tile, tgt_ptr, R, D, s_zn, s_zd, SOFT, ROWS)
    poff = row_offsets(rows, D, s_pn, s_pd)
    sc = row_scale(rows, rmask, scale_ptr, scale_mul, ROWS, SCALE_MODE)
    if MODE == _GRAD:
        m, ld, srow = load_stats(stats_ptr, rows, rmask)
        lds = safe_log_d(ld)
    else:
        m, ld, acc_a, acc_b, acc_bz = stream_stats(
            z_ptr, zoff, s_zk, K, rmask, t, p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add,
            TERM, SOFT, PATH, HAS_WEIGHT, HAS_SMOOTH, ROWS, BLOCK, LANE,
        )  # fmt: skip
        lds = safe_log_d(ld)
        if PATH == 1:
            if not SOFT:
                acc_a, acc_b, acc_bz = onehot_linear_sums(
                    z_ptr, zoff, s_zk, rmask, t, w_ptr, on, off, m, acc_b, acc_bz, TERM, ROWS,
                    HAS_WEIGHT,
                )  # fmt: skip
            # sum_k w_k (a_k - b_k s_k) = A - sum w b (z - m) + B log d
            loss = acc_a - acc_bz + acc_b * lds
            loss, srow = finish_full(loss, -acc_b, m + ld, zl, valid, HAS_ZLOSS)
        elif PATH == 2:
            loss, srow = stream_full_sums(
                z_ptr, zoff, s_zk, K, rmask, m, lds, t, p_ptr, poff, s_pk, w_ptr,
                on, off, p_mul, p_add, a0, a1, a2,
                TERM, SOFT, VANISH, HAS_WEIGHT, HAS_SMOOTH, ROWS, BLOCK,
            )  # fmt: skip
            loss, srow = finish_full(loss, srow, m + ld, zl, valid, HAS_ZLOSS)
    if PATH == 0:
        ew = tl.load(ew_ptr + rows, mask=rmask, other=0.0)
        z_t = tl.load(z_ptr + zoff + tl.maximum(t, 0) * s_zk, mask=rmask, other=0.0)
        loss, coef, gt = fast_row(
            z_t.to(tl.float32), m, ld, ew, valid, sc, zl, a0, a1, a2, TERM, HAS_ZLOSS
        )
        srow = tl.zeros_like(m)
    if MODE != _GRAD:
        tl.store(loss_ptr + rows, loss, mask=rmask)
        store_stats(stats_ptr, rows, rmask, m, ld, srow)
    if MODE != _LOSS:
        if PATH != 0:
            coef = srow
            gt = srow
        stream_gradient(
            z_ptr, out_ptr, zoff, s_zk, K, rmask, t, m, lds, srow, coef, gt,
            tl.where(valid, sc, 0.0), p_ptr, poff, s_pk, w_ptr, on, off, p_mul, p_add, a0, a1,
            a2, TERM, SOFT, PATH, VANISH, HAS_WEIGHT, HAS_SMOOTH, BLOCK, REVERSE,
        )  # fmt: skip


@triton.jit
def loss_kernel(
    z_ptr: tl.tensor,
    out_ptr: tl.tensor,
    tgt_ptr: tl.tensor,
    p_ptr: tl.tensor,
    ew_ptr: tl.tensor,
    w_ptr: tl.tensor,
    loss_ptr: tl.tensor,
    stats_ptr: tl.tensor,
    scale_ptr: tl.tensor,
    R: tl.tensor,
    K: tl.tensor,
    D: tl.tensor,
    s_zn: tl.tensor,
    s_zd: tl.tensor,
    s_zk: tl.tensor,
    s_pn: tl.tensor,
    s_pd: tl.tensor,
    s_pk: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    on: tl.tensor,
    off: tl.tensor,
    p_mul: tl.tensor,
    p_add: tl.tensor,
    zl: tl.tensor,
    scale_mul: tl.tensor,
    TERM: tl.constexpr,
    MODE: tl.constexpr,
    SOFT: tl.constexpr,
    PATH: tl.constexpr,
    VANISH: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_SMOOTH: tl.constexpr,
    HAS_ZLOSS: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    ON_CHIP: tl.constexpr,
    PERSISTENT: tl.constexpr,
    REVERSE: tl.constexpr,
    LANE: tl.constexpr,
) -> None:
    """The template: tiles of ``ROWS`` rows, one per program or strided over a persistent grid.

    Args (pointers): logits ``z``, gradient output ``out`` (may be ``z``), class indices
    ``tgt`` (int64, -1 where ignored) or soft targets ``p``, per-row weights ``ew = w_t``
    (fast path), per-class multipliers ``w``, per-row ``loss`` (fp32), ``stats`` ``(R, 3)``
    fp32 ``(m, log d, S)`` (:func:`store_stats`), gradient factor ``scale``. Shapes:
    ``R = N * D`` rows of ``K`` classes with strides ``(s_zn, s_zd, s_zk)`` (targets
    ``(s_pn, s_pd, s_pk)``).
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
    g_ptr: tl.tensor,
    gl_ptr: tl.tensor,
    base_ptr: tl.tensor,
    R: tl.tensor,
    K: tl.tensor,
    D: tl.tensor,
    s_n: tl.tensor,
    s_d: tl.tensor,
    s_k: tl.tensor,
    s_gl: tl.tensor,
    BLOCK: tl.constexpr,
) -> None:
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
            offs = off + col_offsets(cols, s_k)
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(g_ptr + offs, (g * factor).to(g_ptr.dtype.element_ty), mask=mask)
