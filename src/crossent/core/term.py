r"""The interface of a per-class term ``F(s, P)`` with ``G(s, P) = dF/ds``, and its kernel code.

Every multiclass loss of the family is ``loss = sum_k w_k F(s_k, P_k)`` with ``s = z - lse(z)``
the log-probabilities and ``P`` the target distribution (docs/design.md, "One engine"). A term
is that scalar function and its derivative, nothing else: the engine
(:mod:`crossent.engine`) handles targets, weights, reductions, dtypes, chunking and the
gradient with respect to the logits,

.. math::

    \frac{\partial\,\mathrm{loss}}{\partial z_j}
        = w_j G(s_j, P_j) - q_j \sum_k w_k G(s_k, P_k), \qquad q = e^{s}.

Conventions for writing a term (the concrete terms live in :mod:`crossent.terms`):

* ``value`` and ``grad`` are pure, elementwise and differentiable by autograd (the engine's
  differentiable fallback for double backward differentiates ``value``).
* ``s`` may be ``-inf`` (a masked class); a term never forms ``0 * inf`` (use ``xlogy``,
  ``expm1``, ``where``). ``1 - e^x`` is always ``-expm1(x)``.
* ``vanishes_where_target_zero`` says ``F(s, 0) = G(s, 0) = 0`` for every ``s``; the engine
  then takes the one-hot fast path (one gather per row) for class-index targets, and itself
  zeroes ``F`` and ``G`` where ``P = 0`` on the other paths (so ``-P s`` needs no guard).
* ``linear_in_target`` says ``F(s, P) = P F(s, 1)`` and ``G(s, P) = P G(s, 1)``; the engine
  then never builds the smoothed target ``P`` for class indices: with
  ``P = off + (on - off) onehot(t)`` a row needs one sum over classes and one gather.
* ``affine_slope = c`` says ``F(s, 1) = c s`` (so ``G(s, 1) = c``, a constant): on that
  smoothed-index path a row then needs only sums of the logits, and the term is never
  evaluated per class (cross-entropy, ``c = -1``).
* ``kernel`` is the term's block in the GPU kernel template (a :class:`KernelCode`), or
  ``None`` for a term that runs on the PyTorch engine only. Every subclass declares it (a
  class that does not is refused when it is defined), and :meth:`Term.kernel_scalars` gives
  the block's three runtime scalars.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import torch
from torch import Tensor


class KernelCode(enum.IntEnum):
    """The ``TERM`` blocks of the GPU kernel template (:mod:`crossent.kernels`)."""

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
    SYMMETRIC_CE = 12  # c1 CE + c2 reverse CE (Wang et al. 2019)
    MIXED_KL = 13  # c1 forward KL + c2 reverse KL


_UNDECLARED = object()


class Term:
    """Base class of a per-class term ``F(s, P)`` with ``G = dF/ds`` (see module docstring)."""

    name: ClassVar[str] = "term"
    vanishes_where_target_zero: ClassVar[bool] = True
    linear_in_target: ClassVar[bool] = False
    affine_slope: ClassVar[float | None] = None
    kernel: ClassVar[KernelCode | None]

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Refuse a term class that does not declare its kernel block (or ``None``)."""
        super().__init_subclass__(**kwargs)
        if getattr(cls, "kernel", _UNDECLARED) is _UNDECLARED:
            raise TypeError(
                f"Term class {cls.__name__} must declare `kernel`: its KernelCode in the GPU "
                "kernel template, or None when it runs on the PyTorch engine only"
            )

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``F(s, P)``, elementwise."""
        raise NotImplementedError

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``G(s, P) = dF/ds``, elementwise."""
        raise NotImplementedError

    def value_and_grad(self, s: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(F(s, P), G(s, P))``; a term overrides it where both share costly pieces."""
        return self.value(s, p), self.grad(s, p)

    def kernel_params(self) -> tuple[float, ...]:
        """The term's hyper-parameters, in a fixed order (shown by ``repr``)."""
        return ()

    def kernel_code(self) -> KernelCode | None:
        """This instance's kernel block (the class's ``kernel``; a sum of terms may differ)."""
        return type(self).kernel

    def kernel_scalars(self) -> tuple[float, float, float]:
        """The runtime scalars ``(a0, a1, a2)`` of the kernel block (hyper-parameters, padded)."""
        padded = (*self.kernel_params(), 0.0, 0.0, 0.0)
        return float(padded[0]), float(padded[1]), float(padded[2])

    def takes_log_of_target(self) -> bool:
        """Whether ``F`` reads ``log P`` (then a negative probability target is an error)."""
        return False

    def __repr__(self) -> str:
        params = ", ".join(f"{v:g}" for v in self.kernel_params())
        return f"{type(self).__name__}({params})"


def value_where_target(term: Term, s: Tensor, p: Tensor) -> Tensor:
    """``F(s, P)`` with the engine's convention ``F = 0`` where ``P = 0`` for vanishing terms.

    Written so that autograd also gets ``dF/dP`` right at ``P = 0`` (a probability target
    that requires grad): a term linear in the target (``F = P F(s, 1)``) is evaluated with
    ``s = 0`` where ``P = 0`` and ``s = -inf`` (a masked class), which gives exactly 0 there
    and keeps ``dF/dP = F(s, 1)`` elsewhere; other vanishing terms are zeroed where ``P = 0``.
    """
    if not term.vanishes_where_target_zero:
        return term.value(s, p)
    if term.linear_in_target:
        s = torch.where((p == 0) & torch.isneginf(s), torch.zeros_like(s), s)
        return term.value(s, p)
    f = term.value(s, p)
    return torch.where(p == 0, torch.zeros_like(f), f)
