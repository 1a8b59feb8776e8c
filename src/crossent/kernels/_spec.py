"""How a term is described to the GPU kernel template: a code and three runtime scalars.

This module imports no Triton, so the dispatch can ask :func:`term_spec` cheaply. The code is
the term's own declaration (:attr:`crossent.core.term.Term.kernel`); it selects one
``if TERM == ...:`` block of F and G in :mod:`crossent.kernels._terms_jit`. The
hyper-parameters (gamma, q, eps, A, beta, ...) travel as runtime scalars
(:meth:`crossent.core.term.Term.kernel_scalars`), so a new value never recompiles the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossent.core.term import KernelCode, Term

# Terms whose F is linear in ``s`` (``F = a(P) - b(P) s``, ``G = -b(P)``): their full-row sums
# are accumulated during the online-softmax pass, so the streamed kernel needs two passes.
LINEAR_CODES = frozenset({KernelCode.CE, KernelCode.FORWARD_KL})


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


def term_spec(term: Term) -> TermSpec | None:
    """The kernel description of ``term``, or ``None`` when it runs on the engine only."""
    code = term.kernel_code()
    if code is None:
        return None
    a0, a1, a2 = term.kernel_scalars()
    return TermSpec(int(code), a0, a1, a2, bool(term.vanishes_where_target_zero))
