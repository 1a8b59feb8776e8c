r"""F and G of every engine term as Triton device functions (the table of docs/design.md).

One ``if TERM == ...:`` block per term, chosen at compile time (``TERM`` is a
``tl.constexpr``); hyper-parameters are runtime scalars ``a0, a1, a2`` (see
:class:`crossent.kernels._spec.TermSpec`). Inputs are float32: ``s`` the
log-probability (may be ``-inf`` for a masked class), ``q = e^s``, ``p`` the target value
(a probability, or the teacher's log-probability ``t`` for the distillation terms). No
expression forms ``0 * inf``; every ``1 - e^x`` is :func:`one_minus_exp`.

Triton reads parameter annotations (only ``tl.constexpr`` changes compilation), so plain
arguments are annotated ``tl.tensor``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from crossent.core.term import KernelCode

_CE = tl.constexpr(int(KernelCode.CE))
_FOCAL = tl.constexpr(int(KernelCode.FOCAL))
_LQ = tl.constexpr(int(KernelCode.LQ))
_UNHINGED = tl.constexpr(int(KernelCode.UNHINGED))
_POLY1 = tl.constexpr(int(KernelCode.POLY1))
_MAE = tl.constexpr(int(KernelCode.MAE))
_RCE = tl.constexpr(int(KernelCode.RCE))
_CONF_PENALTY = tl.constexpr(int(KernelCode.CONF_PENALTY))
_BRIER = tl.constexpr(int(KernelCode.BRIER))
_FORWARD_KL = tl.constexpr(int(KernelCode.FORWARD_KL))
_REVERSE_KL = tl.constexpr(int(KernelCode.REVERSE_KL))
_JSD = tl.constexpr(int(KernelCode.JSD))
_SYMMETRIC_CE = tl.constexpr(int(KernelCode.SYMMETRIC_CE))
_MIXED_KL = tl.constexpr(int(KernelCode.MIXED_KL))
_LN2 = tl.constexpr(0.6931471805599453)
_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def one_minus_exp(x: tl.tensor) -> tl.tensor:
    """``1 - e^x = -expm1(x)`` to a few ulps for ``x <= 0`` (``-inf`` gives 1).

    Kahan's identity ``expm1(x) = (u - 1) x / log(u)``, ``u = e^x``, cancels the rounding of
    ``u`` (libdevice's ``expm1`` is not available to the interpreter).
    """
    u = tl.exp(x)
    um1 = u - 1.0
    lg = tl.log(u)
    ratio = um1 * x / tl.where(lg == 0.0, 1.0, lg)
    em1 = tl.where(u == 1.0, x, tl.where(um1 == -1.0, -1.0, ratio))
    return -em1


@triton.jit
def _pow(base: tl.tensor, expo: tl.tensor) -> tl.tensor:
    """``base ** expo`` for ``base >= 0``, ``expo >= 0``, with ``0 ** 0 = 1``."""
    r = tl.exp2(expo * tl.log2(tl.where(base == 0.0, 1.0, base)))
    return tl.where(base == 0.0, tl.where(expo == 0.0, 1.0, 0.0), r)


@triton.jit
def _vanishing_terms(
    s: tl.tensor,
    q: tl.tensor,
    p: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    TERM: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:
    """Terms with ``F(s, 0) = G(s, 0) = 0``: CE, focal, Lq, unhinged, poly-1."""
    if TERM == _CE:
        # F = -P s, G = -P
        f = -p * s
        g = tl.zeros_like(s) - p
    elif TERM == _FOCAL:
        # gamma = a1 where s < a0, else a2 (FLSD-53: a0 = log 0.2, a1 = 5, a2 = 3)
        gam = tl.where(s < a0, a1, a2)
        omq = one_minus_exp(s)
        pw = _pow(omq, gam)
        # F = -P (1-q)^g s ; G = -P (1-q)^g [1 - g q r(s)], r(s) = s / (1-q), r(0) = -1
        r = tl.where(omq == 0.0, -1.0, s / tl.where(omq == 0.0, 1.0, omq))
        qr = tl.where(q == 0.0, 0.0, q * r)
        f = -p * pw * s
        g = -p * pw * (1.0 - gam * qr)
    elif TERM == _LQ:
        # F = P (1 - e^(q s)) / q (q = a0; q = 0: -P s), G = -P e^(q s); truncated Lq:
        # e^s -> max(e^s, k) with a1 = log k (-inf: none), constant F and G = 0 below k
        cut = (s <= a1) & (a1 != _NEG_INF)
        sc = tl.where(cut, a1, s)
        f = tl.where(a0 == 0.0, -p * sc, p * one_minus_exp(a0 * sc) / tl.where(a0 == 0.0, 1.0, a0))
        g = tl.where(cut, 0.0, -p * tl.exp(a0 * s))
    elif TERM == _UNHINGED:
        # F = P (1 - e^s), G = -P e^s
        f = p * one_minus_exp(s)
        g = -p * q
    else:
        tl.static_assert(TERM == _POLY1, "a vanishing term without a block")
        # poly-1: F = P (-s + eps (1 - e^s)), G = P (-1 - eps e^s)
        f = p * (a0 * one_minus_exp(s) - s)
        g = p * (-1.0 - a0 * q)
    return f, g


@triton.jit
def _reverse_ce(q: tl.tensor, p: tl.tensor, big_a: tl.tensor) -> tl.tensor:
    """Reverse CE's ``F = G = -e^s max(log P, A)`` (``log 0`` taken as ``A``)."""
    lp = tl.where(p > 0.0, tl.log(tl.where(p > 0.0, p, 1.0)), big_a)
    return -q * tl.maximum(lp, big_a)


@triton.jit
def _symmetric_ce(
    s: tl.tensor, q: tl.tensor, p: tl.tensor, c1: tl.tensor, c2: tl.tensor, big_a: tl.tensor
) -> tuple[tl.tensor, tl.tensor]:
    """Symmetric CE ``c1 CE + c2 RCE``: ``F = -c1 P s + c2 F_rce``, ``G = -c1 P + c2 F_rce``.

    The CE part is 0 where ``P = 0``, as the engine's weighted sum zeroes a vanishing part.
    """
    ps = tl.where(p == 0.0, 0.0, p * s)
    rce = _reverse_ce(q, p, big_a)
    return c2 * rce - c1 * ps, c2 * rce - c1 * p


@triton.jit
def _dense_terms(
    s: tl.tensor, q: tl.tensor, p: tl.tensor, a0: tl.tensor, TERM: tl.constexpr
) -> tuple[tl.tensor, tl.tensor]:
    """Terms acting on every class: MAE, reverse CE, confidence penalty, Brier."""
    # e^s - P without cancellation where P is near 1: expm1(s) + (1 - P)
    d = tl.where(p > 0.5, (1.0 - p) - one_minus_exp(s), q - p)
    if TERM == _MAE:
        # F = |P - e^s|, G = -sign(P - e^s) e^s
        f = tl.abs(d)
        g = tl.where(d > 0.0, q, tl.where(d < 0.0, -q, 0.0))
    elif TERM == _RCE:
        # F = G = -e^s max(log P, A)
        f = _reverse_ce(q, p, a0)
        g = f
    elif TERM == _CONF_PENALTY:
        # F = -P s + beta e^s s, G = -P + beta e^s (s + 1)
        ps = tl.where(p == 0.0, 0.0, p * s)
        qs = tl.where(q == 0.0, 0.0, q * s)
        f = a0 * qs - ps
        g = a0 * (qs + q) - p
    else:
        tl.static_assert(TERM == _BRIER, "a dense term without a block")
        # Brier: F = (e^s - P)^2, G = 2 (e^s - P) e^s
        f = d * d
        g = 2.0 * d * q
    return f, g


@triton.jit
def _forward_kl(s: tl.tensor, et: tl.tensor, t: tl.tensor) -> tuple[tl.tensor, tl.tensor]:
    """``F = e^t (t - s)``, ``G = -e^t`` (``et = e^t``)."""
    return tl.where(et == 0.0, 0.0, et * (t - s)), tl.zeros_like(s) - et


@triton.jit
def _reverse_kl(s: tl.tensor, q: tl.tensor, t: tl.tensor) -> tuple[tl.tensor, tl.tensor]:
    """``F = e^s (s - t)``, ``G = e^s (s - t + 1)``."""
    f = tl.where(q == 0.0, 0.0, q * (s - t))
    g = tl.where(q == 0.0, 0.0, q * (s - t + 1.0))
    return f, g


@triton.jit
def _distill_terms(
    s: tl.tensor,
    q: tl.tensor,
    t: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    TERM: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:
    """Divergences from a teacher's log-probabilities ``t``.

    Forward KL, reverse KL, mixed KL (``a0`` forward + ``a1`` reverse) and JSD.
    """
    et = tl.exp(t)
    if TERM == _FORWARD_KL:
        f, g = _forward_kl(s, et, t)
    elif TERM == _REVERSE_KL:
        f, g = _reverse_kl(s, q, t)
    elif TERM == _MIXED_KL:
        f_fwd, g_fwd = _forward_kl(s, et, t)
        f_rev, g_rev = _reverse_kl(s, q, t)
        f = a0 * f_fwd + a1 * f_rev
        g = a0 * g_fwd + a1 * g_rev
    else:
        tl.static_assert(TERM == _JSD, "a divergence without a block")
        # JSD: m = logaddexp(t, s) - log 2; F = (e^t (t-m) + e^s (s-m)) / 2, G = e^s (s-m) / 2
        hi = tl.maximum(t, s)
        lo = tl.minimum(t, s)
        hi_safe = tl.where(hi == _NEG_INF, 0.0, hi)
        m = tl.where(hi == _NEG_INF, hi, hi + tl.log(1.0 + tl.exp(lo - hi_safe))) - _LN2
        m = tl.where(t == s, s, m)  # exactly s where the distributions agree
        ft = tl.where(et == 0.0, 0.0, et * (t - m))
        fs = tl.where(q == 0.0, 0.0, q * (s - m))
        f = 0.5 * (ft + fs)
        g = 0.5 * fs
    return f, g


@triton.jit
def term_fg(
    s: tl.tensor,
    q: tl.tensor,
    p: tl.tensor,
    a0: tl.tensor,
    a1: tl.tensor,
    a2: tl.tensor,
    TERM: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor]:
    """``(F(s, P), G(s, P))`` of the term ``TERM``, elementwise in float32."""
    if TERM <= _POLY1:
        f, g = _vanishing_terms(s, q, p, a0, a1, a2, TERM)
    elif TERM <= _BRIER:
        f, g = _dense_terms(s, q, p, a0, TERM)
    elif TERM == _SYMMETRIC_CE:
        f, g = _symmetric_ce(s, q, p, a0, a1, a2)
    else:
        f, g = _distill_terms(s, q, p, a0, a1, TERM)
    return f, g


@triton.jit
def linear_ab(p: tl.tensor, TERM: tl.constexpr) -> tuple[tl.tensor, tl.tensor]:
    """``(a, b)`` of a term linear in ``s``: ``F = a - b s``, ``G = -b`` (CE, forward KL)."""
    if TERM == _CE:
        a = tl.zeros_like(p)
        b = p
    else:
        b = tl.exp(p)
        a = tl.where(b == 0.0, 0.0, b * p)
    return a, b
