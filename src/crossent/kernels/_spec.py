"""How a term is described to the GPU kernel template: a code and two runtime scalars.

This module imports no Triton, so the dispatch can ask :func:`term_spec` cheaply. Each code
selects one ``if TERM == ...:`` block of F and G in :mod:`crossent.kernels.triton_engine`;
the hyper-parameters (gamma, q, eps, A, beta, ...) travel as runtime scalars, so a new value
never recompiles the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from crossent.terms import Term

# Term codes of the kernel template (mirrored as tl.constexpr in triton_engine).
CE = 0
FOCAL = 1
LQ = 2
UNHINGED = 3
POLY1 = 4
MAE = 5
RCE = 6
CONF_PENALTY = 7
BRIER = 8
FORWARD_KL = 9
REVERSE_KL = 10
JSD = 11
# Weighted sums of two terms (:class:`crossent.terms.WeightedSumTerm`) the template has a block for
SYMMETRIC_CE = 12  # c1 CE + c2 reverse CE (Wang et al. 2019)
MIXED_KL = 13  # c1 forward KL + c2 reverse KL

# Terms whose F is linear in ``s`` (``F = a(P) - b(P) s``, ``G = -b(P)``): their full-row sums
# are accumulated during the online-softmax pass, so the streamed kernel needs two passes.
LINEAR_CODES = frozenset({CE, FORWARD_KL})

_NEG_INF = float("-inf")


def _focal(params: tuple[float, ...]) -> tuple[float, float, float]:
    # gamma = a1 where s < a0, else a2; plain focal never switches
    return (_NEG_INF, params[0], params[0])


def _flsd(params: tuple[float, ...]) -> tuple[float, float, float]:
    threshold, low, high = params
    return (math.log(threshold), low, high)


def _lq(params: tuple[float, ...]) -> tuple[float, float, float]:
    q, k = params
    return (q, math.log(k) if k > 0 else _NEG_INF, 0.0)


def _plain(params: tuple[float, ...]) -> tuple[float, float, float]:
    return (*params, 0.0, 0.0, 0.0)[:3]


# term.name -> (kernel code, kernel_params() -> (a0, a1, a2))
_CODES: dict[str, tuple[int, Callable[[tuple[float, ...]], tuple[float, float, float]]]] = {
    "cross_entropy": (CE, _plain),
    "focal": (FOCAL, _focal),
    "focal_flsd53": (FOCAL, _flsd),
    "lq": (LQ, _lq),
    "unhinged": (UNHINGED, _plain),
    "poly1": (POLY1, _plain),
    "mae": (MAE, _plain),
    "reverse_cross_entropy": (RCE, _plain),
    "confidence_penalty": (CONF_PENALTY, _plain),
    "brier": (BRIER, _plain),
    "forward_kl": (FORWARD_KL, _plain),
    "reverse_kl": (REVERSE_KL, _plain),
    "jensen_shannon": (JSD, _plain),
}


# WeightedSumTerm part names -> kernel code; a0, a1 are the coefficients, a2 the second
# part's parameter (reverse CE's A)
_PAIRS: dict[tuple[str, ...], int] = {
    ("cross_entropy", "reverse_cross_entropy"): SYMMETRIC_CE,
    ("forward_kl", "reverse_kl"): MIXED_KL,
}


@dataclass(frozen=True)
class TermSpec:
    """A term as the kernel sees it.

    Attributes:
        code: the ``TERM`` constexpr of the kernel template.
        a0: first runtime scalar (Lq's q, poly-1's eps, reverse CE's A, the confidence
            penalty's beta; focal's switch point ``log p``; a weighted sum's first
            coefficient).
        a1: second runtime scalar (focal's gamma below the switch, Lq's ``log k``; a
            weighted sum's second coefficient).
        a2: third runtime scalar (focal's gamma at or above the switch; symmetric CE's A).
        vanishes: ``F(s, 0) = G(s, 0) = 0`` (the one-hot fast path applies).
    """

    code: int
    a0: float
    a1: float
    a2: float
    vanishes: bool

    @property
    def linear(self) -> bool:
        """Whether ``F`` is linear in ``s`` (two streamed passes instead of three)."""
        return self.code in LINEAR_CODES


def _weighted_sum_spec(term: Term) -> TermSpec | None:
    """A two-part weighted sum the template has a block for (symmetric CE, mixed KL)."""
    parts = getattr(term, "parts", ())
    code = _PAIRS.get(tuple(getattr(part, "name", "") for _, part in parts))
    if code is None:
        return None
    (c1, first), (c2, second) = parts
    params = tuple(float(v) for v in (*first.kernel_params(), *second.kernel_params()))
    return TermSpec(code, float(c1), float(c2), params[0] if params else 0.0, False)


def term_spec(term: Term) -> TermSpec | None:
    """The kernel description of ``term``, or ``None`` when the template lacks it."""
    if getattr(term, "name", "") == "weighted_sum":
        return _weighted_sum_spec(term)
    entry = _CODES.get(getattr(term, "name", ""))
    if entry is None:
        return None
    code, convert = entry
    a0, a1, a2 = convert(tuple(float(v) for v in term.kernel_params()))
    return TermSpec(code, a0, a1, a2, bool(term.vanishes_where_target_zero))
