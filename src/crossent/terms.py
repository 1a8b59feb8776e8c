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
  then takes the one-hot fast path (one gather per row) for class-index targets, and itself
  zeroes ``F`` and ``G`` where ``P = 0`` on the other paths (so ``-P s`` needs no guard).
* ``linear_in_target`` says ``F(s, P) = P F(s, 1)`` and ``G(s, P) = P G(s, 1)``; the engine
  then never builds the smoothed target ``P`` for class indices: with
  ``P = off + (on - off) onehot(t)`` a row needs one sum over classes and one gather.
* ``affine_slope = c`` says ``F(s, 1) = c s`` (so ``G(s, 1) = c``, a constant): on that
  smoothed-index path a row then needs only sums of the logits, and the term is never
  evaluated per class (cross-entropy, ``c = -1``).
* ``kernel_name`` and ``kernel_params`` describe the term to the GPU kernel template.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor


class Term:
    """Base class of a per-class term ``F(s, P)`` with ``G = dF/ds`` (see module docstring)."""

    name: ClassVar[str] = "term"
    vanishes_where_target_zero: ClassVar[bool] = True
    linear_in_target: ClassVar[bool] = False
    affine_slope: ClassVar[float | None] = None

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
        """Runtime scalars the GPU kernel needs for this term (hyper-parameters)."""
        return ()

    def takes_log_of_target(self) -> bool:
        """Whether ``F`` reads ``log P`` (then a negative probability target is an error)."""
        return False

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
    linear_in_target: ClassVar[bool] = True
    affine_slope: ClassVar[float | None] = -1.0

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P s`` (the engine zeroes it where ``P = 0``, also for a masked ``s = -inf``)."""
        return -p * s

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P``, broadcast to the shape of ``s``."""
        return torch.broadcast_to(-p, torch.broadcast_shapes(s.shape, p.shape)).to(s.dtype)


# Below this log-probability e^s is exactly 0 in float32 and float64, so replacing s by
# max(s, _S_FLOOR) changes no product e^s * h(s) and keeps 0 * inf (s = -inf) out of it.
_S_FLOOR = -1.0e4
# log(0.2): the FLSD-53 schedule switches gamma where p < 0.2 (Mukhoti et al. 2020).
_LOG_FLSD_THRESHOLD = math.log(0.2)


def _no_graph(*tensors: Tensor) -> bool:
    """Whether no autograd graph is being recorded through ``tensors`` (in-place is safe)."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _prob_minus_target(s: Tensor, p: Tensor) -> Tensor:
    """``e^s - P`` without cancellation where ``P`` is near 1 (``e^s - 1 = expm1(s)``)."""
    return torch.where(p > 0.5, torch.expm1(s) + (1 - p), torch.exp(s) - p)


class FocalTerm(Term):
    r"""Focal loss (Lin et al. 2017): ``F = -P (1 - e^s)^g s``.

    .. math::

        F(s, P) = -P (1 - e^{s})^{\gamma} s, \qquad
        G(s, P) = -P (1 - q)^{\gamma} \left[1 - \gamma\, q\, r(s)\right],

    with ``q = e^s`` and ``r(s) = s / (1 - q)``, ``r(0) = -1``. The textbook form
    ``g q (1-q)^(g-1) s`` is ``0 * inf`` for ``g < 1`` at a saturated class (``s = 0`` in
    float32); this one is finite there, and at ``s = -inf``. ``1 - q`` is ``-expm1(s)``.
    ``gamma = 0`` is cross-entropy.

    Reference: Lin et al., `Focal Loss for Dense Object Detection
    <https://arxiv.org/abs/1708.02002>`_, 2017.

    Example:
        >>> t = FocalTerm(2.0)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.1733
    """

    name: ClassVar[str] = "focal"
    linear_in_target: ClassVar[bool] = True

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)

    def _gamma(self, s: Tensor) -> Tensor | float:
        """The exponent at each element (a constant here)."""
        return self.gamma

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1 - e^s)^g s`` with ``1 - e^s = -expm1(s)``."""
        g = self._gamma(s)
        if _no_graph(s, p):  # the same, in place on a fresh tensor (the engine's forward pass)
            return torch.expm1(s).neg_().pow_(g).mul_(s).mul_(-p)
        return -p * (-torch.expm1(s)).pow(g) * s

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P (1-q)^g [1 - g q r(s)]`` with ``r(s) = s / (1 - q)``, ``r(0) = -1``.

        At ``s = 0`` exactly (a saturated class, ``1 - q = 0``) the value of ``r`` does not
        matter: ``(1 - q)^g = 0`` for ``g > 0`` and ``g q r = 0`` for ``g = 0``; dividing by
        ``max(1 - q, tiny)`` keeps it finite there with one operation instead of a branch.
        """
        g = self._gamma(s)
        s = s.clamp(min=_S_FLOOR)  # e^s = 0 below: keeps e^s * s finite at s = -inf
        if _no_graph(s, p):  # the same, in place on fresh tensors (the engine's forward pass)
            one_minus_q, bracket = _focal_pieces(s, g)
            return one_minus_q.pow_(g).mul_(bracket).mul_(-p)
        one_minus_q = -torch.expm1(s)
        bracket = 1 - g * torch.exp(s) * s / one_minus_q.clamp(min=torch.finfo(s.dtype).tiny)
        return -p * one_minus_q.pow(g) * bracket

    def value_and_grad(self, s: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``F`` and ``G`` sharing ``1 - q`` and ``(1 - q)^g`` (one ``expm1``, one ``pow``)."""
        if not _no_graph(s, p):
            return self.value(s, p), self.grad(s, p)
        g = self._gamma(s)
        # (1 - q) is 1 below the floor as it is at s = -inf, so F keeps the unclamped s
        one_minus_q, bracket = _focal_pieces(s.clamp(min=_S_FLOOR), g)
        power = one_minus_q.pow_(g)
        value = torch.mul(power, s).mul_(-p)
        return value, power.mul_(bracket).mul_(-p)

    def kernel_params(self) -> tuple[float, ...]:
        """``(gamma,)``."""
        return (self.gamma,)


def _focal_pieces(s: Tensor, g: Tensor | float) -> tuple[Tensor, Tensor]:
    """``1 - e^s`` and ``1 - g q r(s) = 1 - g e^s s / (1 - e^s)`` as fresh tensors.

    ``s`` is already clamped at :data:`_S_FLOOR`; ``1 - e^s`` is ``-expm1(s)``, and the
    division uses ``max(1 - e^s, tiny)`` (see :meth:`FocalTerm.grad`).
    """
    one_minus_q = torch.expm1(s).neg_()
    tiny = torch.finfo(s.dtype).tiny
    bracket = torch.exp(s).mul_(s).div_(one_minus_q.clamp(min=tiny)).mul_(-g).add_(1)
    return one_minus_q, bracket


class FLSD53FocalTerm(FocalTerm):
    r"""Focal loss with the sample-dependent schedule FLSD-53 (Mukhoti et al. 2020).

    ``gamma = 5`` where the class's own probability ``e^s < 0.2``, else ``gamma = 3``, then
    :class:`FocalTerm`'s ``F`` and ``G`` with that exponent (for one-hot targets this is the
    schedule on ``p_t``). The exponent is piecewise constant in ``s``, so ``G`` has no term
    from it, as in the authors' code (which treats gamma as a constant per sample).

    Reference: Mukhoti et al., `Calibrating Deep Neural Networks using Focal Loss
    <https://arxiv.org/abs/2002.09437>`_, 2020.

    Example:
        >>> t = FLSD53FocalTerm()
        >>> round(t.value(torch.log(torch.tensor([0.1])), torch.tensor([1.0])).item(), 4)
        1.3597
    """

    name: ClassVar[str] = "focal_flsd53"

    def __init__(self) -> None:
        super().__init__(3.0)

    def _gamma(self, s: Tensor) -> Tensor:
        """5 where ``e^s < 0.2``, else 3."""
        five, three = torch.full_like(s, 5.0), torch.full_like(s, 3.0)
        return torch.where(s < _LOG_FLSD_THRESHOLD, five, three)

    def kernel_params(self) -> tuple[float, ...]:
        """``(threshold, gamma below it, gamma at or above it) = (0.2, 5, 3)``."""
        return (0.2, 5.0, 3.0)


class LqTerm(Term):
    r"""Generalized cross-entropy, the Lq loss (Zhang & Sabuncu 2018).

    .. math::

        F(s, P) = P \frac{1 - e^{q s}}{q}, \qquad G(s, P) = -P e^{q s};

    ``q = 0`` is cross-entropy (``F = -P s``), ``q = 1`` the unhinged loss. ``1 - e^(qs)`` is
    ``-expm1(q s)``, so small ``q`` stays within float rounding of the ``q -> 0`` limit.
    With ``truncate = k`` (the truncated Lq loss) ``e^s`` is replaced by ``max(e^s, k)``: the
    loss is constant, ``(1 - k^q)/q``, and the gradient 0 where the probability is ``<= k``.

    Reference: Zhang & Sabuncu, `Generalized Cross Entropy Loss for Training Deep Neural
    Networks with Noisy Labels <https://arxiv.org/abs/1805.07836>`_, 2018.

    Example:
        >>> t = LqTerm(1.0)
        >>> t.value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.7500])
    """

    name: ClassVar[str] = "lq"
    linear_in_target: ClassVar[bool] = True

    def __init__(self, q: float, truncate: float | None = None) -> None:
        self.q = float(q)
        self.truncate = truncate
        self._log_k = None if truncate is None else math.log(truncate)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (1 - e^(q s)) / q``; ``-P s`` at ``q = 0``."""
        if self._log_k is not None:
            s = s.clamp(min=self._log_k)  # p -> max(p, k)
        if self.q == 0:
            return -p * s
        # 1 - e^(q s) = -expm1(q s), in [0, 1] for s <= 0: finite even at s = -inf
        f = torch.mul(s, self.q)
        if _no_graph(s, p):  # in place on the fresh product (the engine's forward pass)
            return f.expm1_().mul_(-p / self.q)
        return torch.expm1(f) * (-p / self.q)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P e^(q s)``; 0 below the truncation."""
        if self.q == 0:
            g = -p * torch.ones_like(s)
        elif _no_graph(s, p):
            g = torch.mul(s, self.q).exp_().mul_(-p)
        else:
            g = -p * torch.exp(self.q * s)
        if self._log_k is not None:
            g = torch.where(s > self._log_k, g, torch.zeros_like(g))
        return g

    def kernel_params(self) -> tuple[float, ...]:
        """``(q, k)`` with ``k = 0`` when not truncated."""
        return (self.q, 0.0 if self.truncate is None else float(self.truncate))


class UnhingedTerm(Term):
    r"""Unhinged loss: ``F = P (1 - e^s)``, ``G = -P e^s`` (the Lq loss at ``q = 1``).

    For a one-hot target it is ``1 - p_t``: half of the MAE ``sum_k |P_k - p_k|``, and the
    "MAE" of Ma et al.'s code.

    Reference: van Rooyen et al., `Learning with Symmetric Label Noise: The Importance of
    Being Unhinged <https://arxiv.org/abs/1505.07634>`_, 2015.

    Example:
        >>> UnhingedTerm().value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.7500])
    """

    name: ClassVar[str] = "unhinged"
    linear_in_target: ClassVar[bool] = True

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (1 - e^s)`` with ``1 - e^s = -expm1(s)``."""
        return -p * torch.expm1(s)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P e^s``."""
        return -p * torch.exp(s)


class MAETerm(Term):
    r"""Mean absolute error between the target and the softmax: ``F = |P - e^s|``.

    .. math::

        F(s, P) = \lvert P - e^{s} \rvert, \qquad
        G(s, P) = -\operatorname{sign}(P - e^{s})\, e^{s}.

    It acts on every class (``F(s, 0) = e^s``): ``sum_k |P_k - p_k| = 2 (1 - p_t)`` for a
    one-hot target. ``P - e^s`` is formed as ``(P - 1) - expm1(s)`` where ``P > 1/2``.

    Reference: Ghosh et al., `Robust Loss Functions under Label Noise for Deep Neural
    Networks <https://arxiv.org/abs/1712.09482>`_, 2017.

    Example:
        >>> MAETerm().value(torch.log(torch.tensor([0.25])), torch.tensor([0.0]))
        tensor([0.2500])
    """

    name: ClassVar[str] = "mae"
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``|P - e^s|``."""
        return _prob_minus_target(s, p).abs()

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-sign(P - e^s) e^s = sign(e^s - P) e^s``."""
        return torch.sign(_prob_minus_target(s, p)) * torch.exp(s)


class ReverseCrossEntropyTerm(Term):
    r"""Reverse cross-entropy (Wang et al. 2019): ``F = -e^s max(log P, A)``, ``G = F``.

    The cross-entropy with the roles of prediction and target swapped; ``log 0`` is
    replaced by ``A < 0`` (the authors' code clamps the one-hot at ``1e-4``, i.e.
    ``A = log(1e-4)``). It acts on every class: ``-A (1 - p_t)`` for a one-hot target.

    Reference: Wang et al., `Symmetric Cross Entropy for Robust Learning with Noisy Labels
    <https://arxiv.org/abs/1908.06112>`_, 2019.

    Example:
        >>> t = ReverseCrossEntropyTerm(-4.0)
        >>> t.value(torch.log(torch.tensor([0.25])), torch.tensor([0.0]))
        tensor([1.])
    """

    name: ClassVar[str] = "reverse_cross_entropy"
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, A: float) -> None:
        self.A = float(A)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-e^s max(log P, A)``."""
        return -torch.exp(s) * torch.log(p).clamp(min=self.A)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``d/ds (-e^s c) = -e^s c``: the value itself."""
        return self.value(s, p)

    def takes_log_of_target(self) -> bool:
        """``log P``: a negative probability target has no value."""
        return True

    def kernel_params(self) -> tuple[float, ...]:
        """``(A,)``."""
        return (self.A,)


class Poly1Term(Term):
    r"""Poly-1 (Leng et al. 2022): cross-entropy plus ``epsilon (1 - p)`` per target mass.

    .. math::

        F(s, P) = P\left(-s + \epsilon (1 - e^{s})\right), \qquad
        G(s, P) = P\left(-1 - \epsilon e^{s}\right).

    ``1 - e^s`` is ``-expm1(s)``. For a smoothed target this equals the paper's
    ``CE(P) + epsilon (1 - sum_k P_k p_k)``.

    Reference: Leng et al., `PolyLoss: A Polynomial Expansion Perspective of Classification
    Loss Functions <https://arxiv.org/abs/2204.12511>`_, 2022.

    Example:
        >>> t = Poly1Term(1.0)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        1.1931
    """

    name: ClassVar[str] = "poly1"
    linear_in_target: ClassVar[bool] = True

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(epsilon)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (-s - eps expm1(s))``."""
        return -p * (s + self.epsilon * torch.expm1(s))

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``P (-1 - eps e^s)``."""
        return -p * (1 + self.epsilon * torch.exp(s))

    def kernel_params(self) -> tuple[float, ...]:
        """``(epsilon,)``."""
        return (self.epsilon,)


class ConfidencePenaltyTerm(Term):
    r"""Cross-entropy with the confidence penalty (Pereyra et al. 2017): ``CE - beta H(p)``.

    .. math::

        F(s, P) = -P s + \beta e^{s} s, \qquad G(s, P) = -P + \beta e^{s} (s + 1);

    summed over classes, ``sum_k e^{s_k} s_k = -H(p)``. It acts on every class.

    Reference: Pereyra et al., `Regularizing Neural Networks by Penalizing Confident Output
    Distributions <https://arxiv.org/abs/1701.06548>`_, 2017.

    Example:
        >>> t = ConfidencePenaltyTerm(0.1)
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.6585
    """

    name: ClassVar[str] = "confidence_penalty"
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P s + beta e^s s`` (``-P s = 0`` where ``P = 0``, ``e^s s = 0`` at ``-inf``)."""
        sf = s.clamp(min=_S_FLOOR)
        ce = torch.where(p == 0, torch.zeros_like(s), -p * s)
        return ce + self.beta * torch.exp(sf) * sf

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-P + beta e^s (s + 1)``."""
        sf = s.clamp(min=_S_FLOOR)
        return self.beta * torch.exp(sf) * (sf + 1) - p

    def kernel_params(self) -> tuple[float, ...]:
        """``(beta,)``."""
        return (self.beta,)


class BrierTerm(Term):
    r"""The Brier score as a training loss: ``F = (e^s - P)^2``, ``G = 2 (e^s - P) e^s``.

    Summed over classes it is ``sum_k (p_k - P_k)^2`` (no ``1/K``). It acts on every class.
    ``e^s - P`` is formed as ``expm1(s) + (1 - P)`` where ``P > 1/2``.

    Reference: Brier, `Verification of Forecasts Expressed in Terms of Probability
    <https://doi.org/10.1175/1520-0493(1950)078%3C0001:VOFEIT%3E2.0.CO;2>`_, 1950.

    Example:
        >>> BrierTerm().value(torch.log(torch.tensor([0.25])), torch.tensor([1.0]))
        tensor([0.5625])
    """

    name: ClassVar[str] = "brier"
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``(e^s - P)^2``."""
        return _prob_minus_target(s, p).square()

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``2 (e^s - P) e^s``."""
        return 2 * _prob_minus_target(s, p) * torch.exp(s)


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


class WeightedSumTerm(Term):
    r"""A weighted sum of terms, ``F = sum_i c_i F_i``, ``G = sum_i c_i G_i``, in one pass.

    Used for the symmetric cross-entropy (``alpha CE + beta RCE``) and the mixed KL
    divergence. The sum is treated as acting on every class
    (``vanishes_where_target_zero = False``); the ``F_i`` and ``G_i`` of parts that vanish
    where ``P = 0`` are zeroed there, as the engine would do for them alone.

    Example:
        >>> t = WeightedSumTerm([(0.5, CrossEntropyTerm()), (0.5, UnhingedTerm())])
        >>> round(t.value(torch.log(torch.tensor([0.5])), torch.tensor([1.0])).item(), 4)
        0.5966
    """

    name: ClassVar[str] = "weighted_sum"
    vanishes_where_target_zero: ClassVar[bool] = False

    def __init__(self, parts: list[tuple[float, Term]]) -> None:
        self.parts = [(float(c), term) for c, term in parts]

    @staticmethod
    def _part(term: Term, v: Tensor, p: Tensor) -> Tensor:
        """A part's ``F`` or ``G``, zeroed where ``P = 0`` if the part vanishes there."""
        if term.vanishes_where_target_zero:
            return torch.where(p == 0, torch.zeros_like(v), v)
        return v

    @staticmethod
    def _sum(values: list[Tensor]) -> Tensor:
        """The sum of the parts' tensors."""
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``sum_i c_i F_i(s, P)``."""
        return self._sum([c * self._part(t, t.value(s, p), p) for c, t in self.parts])

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``sum_i c_i G_i(s, P)``."""
        return self._sum([c * self._part(t, t.grad(s, p), p) for c, t in self.parts])

    def takes_log_of_target(self) -> bool:
        """Whether any part reads ``log P``."""
        return any(t.takes_log_of_target() for _, t in self.parts)

    def kernel_params(self) -> tuple[float, ...]:
        """``(c_1, *params_1, c_2, *params_2, ...)``."""
        return tuple(x for c, t in self.parts for x in (c, *t.kernel_params()))
