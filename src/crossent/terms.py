r"""Per-class loss terms: ``F(s, P)`` and its derivative ``G(s, P) = dF/ds``.

Every multiclass loss of the family is ``loss = sum_k w_k F(s_k, P_k)`` with ``s = z - lse(z)``
the log-probabilities and ``P`` the target distribution (DESIGN §1). A term is that scalar
function and its derivative, nothing else: the engine (:mod:`crossent.engine`) handles
targets, weights, reductions, dtypes, chunking and the gradient with respect to the logits,

.. math::

    \frac{\partial\,\mathrm{loss}}{\partial z_j}
        = w_j G(s_j, P_j) - q_j \sum_k w_k G(s_k, P_k), \qquad q = e^{s}.

Conventions for writing a term:

* ``value`` and ``grad`` are pure, elementwise and differentiable by autograd (the engine's
  differentiable fallback for double backward differentiates ``value``).
* ``s`` may be ``-inf`` (a masked class); a term never forms ``0 * inf`` (use ``xlogy``,
  ``expm1``, ``where``). ``1 - e^x`` is always ``-expm1(x)``.
* ``vanishes_where_target_zero`` says ``F(s, 0) = G(s, 0) = 0`` for every ``s``; the engine
  then takes the one-hot fast path (one gather per row) for class-index targets.
* ``kernel_name`` and ``kernel_params`` describe the term to the GPU kernel template.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor


class Term:
    """Base class of a per-class term ``F(s, P)`` with ``G = dF/ds`` (see module docstring)."""

    name: ClassVar[str] = "term"
    vanishes_where_target_zero: ClassVar[bool] = True

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``F(s, P)``, elementwise."""
        raise NotImplementedError

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``G(s, P) = dF/ds``, elementwise."""
        raise NotImplementedError

    def kernel_params(self) -> tuple[float, ...]:
        """Runtime scalars the GPU kernel needs for this term (hyper-parameters)."""
        return ()

    def __repr__(self) -> str:
        params = ", ".join(f"{v:g}" for v in self.kernel_params())
        return f"{type(self).__name__}({params})"


class CrossEntropyTerm(Term):
    """Cross-entropy: ``F(s, P) = -P s``, ``G(s, P) = -P``.

    Example:
        >>> t = CrossEntropyTerm()
        >>> t.value(torch.tensor([-0.5]), torch.tensor([1.0]))
        tensor([0.5000])
    """

    name: ClassVar[str] = "cross_entropy"

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P s``; ``0`` where ``P = 0`` even if ``s = -inf`` (a masked class)."""
        return torch.where(p == 0, torch.zeros_like(s), -p * s)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P``, broadcast to the shape of ``s``."""
        return torch.broadcast_to(-p, torch.broadcast_shapes(s.shape, p.shape)).to(s.dtype)
