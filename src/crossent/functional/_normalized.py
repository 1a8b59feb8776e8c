r"""Normalized losses (Ma et al. 2020): a term's loss divided by its sum over all labels.

.. math::

    \ell = \frac{\sum_k w_k P_k F_1(s_k)}{\sum_j F_1(s_j)}, \qquad F_1(s) = F(s, 1),

e.g. ``F_1(s) = -s`` (normalized cross-entropy) or ``-(1 - e^s)^g s`` (normalized focal).
``P`` is the (smoothed) target distribution and ``w`` the class weights (1 without), so the
numerator is the term's own loss with PyTorch's weighting (``w_t F_1(s_t)`` for a one-hot
target) and ``mean`` divides by the targets' weights, as :func:`torch.nn.functional.cross_entropy`
does; the denominator, a sum over all labels, has neither.
The denominator couples all classes through a ratio, so this is not a per-class sum and not
an engine term; it is built here from the terms' ``F`` and ``G`` with its own analytic
gradient, and dispatched by the engine's :func:`crossent.engine.run` (same autograd contract:
no gradient work under ``no_grad``, ``retain_graph``, double backward through a
differentiable formula). With ``D = sum_j F_1(s_j)`` and ``N`` the numerator,

.. math::

    \frac{\partial \ell}{\partial s_k} = u_k = \frac{(P_k D - N)\, G_1(s_k)}{D^2}, \qquad
    \frac{\partial \ell}{\partial z_j} = u_j - q_j \sum_k u_k .

A masked class (``-inf`` logit) is left out of both sums (it is not a possible label).
Computed on the whole tensor at once (logits-sized temporaries), not in chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype, overflow_safe_dtype
from crossent.core.checks import check_ignore_index
from crossent.core.problem import reduce_losses, reduction_scale
from crossent.core.targets import (
    Targets,
    as_batch,
    check_input,
    check_smoothing,
    prepare_targets,
    smoothed_target_chunk,
    warn_if_probabilities,
)
from crossent.engine import run
from crossent.terms import Term


@dataclass
class _Parts:
    """Intermediate tensors of one evaluation, ``(N, K, D)`` or ``(N, 1, D)``."""

    loss: Tensor  # (N, D) per-element loss, 0 where ignored
    s: Tensor  # log-probabilities
    p: Tensor  # target distribution
    num: Tensor  # (N, 1, D) sum_k P_k F_1(s_k) / c
    den: Tensor  # (N, 1, D) sum_j F_1(s_j) / c, 1 where it is 0
    c: Tensor  # (N, 1, D) the row's largest |F_1|: the sums are of F_1 / c (no overflow)
    keep: Tensor  # (N, 1, D) rows that count: not ignored, denominator > 0


@dataclass(frozen=True)
class NormalizedProblem:
    """One normalized-loss call (see :class:`crossent.core.autograd.Problem`)."""

    targets: Targets
    term: Term
    reduction: str
    weight: Tensor | None = None
    label_smoothing: float = 0.0
    smoothing: str = "uniform"
    inplace_backward: bool = False

    def _parts(self, z: Tensor) -> _Parts:
        x = z.to(overflow_safe_dtype(z))
        lse = torch.logsumexp(x, dim=1, keepdim=True)
        # A fully masked row has lse = -inf; shift by 0 so s stays -inf, not NaN.
        s = x - torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
        p = smoothed_target_chunk(
            self.targets,
            slice(None),
            slice(None),
            x.shape[1],
            self.label_smoothing,
            self.smoothing,
            x.dtype,
        )
        if self.weight is not None:  # w_k P_k: the rest of the formula is linear in it
            p = p * self.weight.to(x.dtype).view(1, -1, 1)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        f = self._masked(s, self.term.value(s, one))
        # N / D = (N / c) / (D / c): with c = max_k |F_1(s_k)| neither sum overflows (logits
        # near 1e38 give F_1 near 1e38 per class, and K of them overflow float32).
        c = f.detach().abs().amax(dim=1, keepdim=True)
        c = torch.where(torch.isfinite(c) & (c > 0), c, torch.ones_like(c))
        f = f / c
        num = torch.where(p == 0, torch.zeros_like(f), p * f).sum(dim=1, keepdim=True)
        den = f.sum(dim=1, keepdim=True)
        # A row with a single possible class has D = 0 (and N = 0): its loss is 0.
        keep = self.targets.valid.unsqueeze(1) & (den != 0)
        den = torch.where(keep, den, torch.ones_like(den))
        loss = torch.where(keep, num / den, torch.zeros_like(num)).squeeze(1)
        return _Parts(loss, s, p, num, den, c, keep)

    @staticmethod
    def _masked(s: Tensor, v: Tensor) -> Tensor:
        """``v`` with 0 at masked classes (``s = -inf``)."""
        return torch.where(torch.isneginf(s), torch.zeros_like(v), v)

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        parts = self._parts(z)
        loss = reduce_losses(parts.loss, self.targets, self.reduction).to(compute_dtype(z.dtype))
        if not want_grad:
            return loss, None
        one = torch.ones((), dtype=parts.s.dtype, device=z.device)
        g = self._masked(parts.s, self.term.grad(parts.s, one))
        # dl/ds_k = (P_k D - N) G_1(s_k) / D^2 = (P_k D' - N') (G_1(s_k) / c) / D'^2 with
        # D' = D / c, N' = N / c;  dl/dz_j = u_j - q_j sum_k u_k
        u = (parts.p * parts.den - parts.num) * (g / parts.c) / parts.den**2
        grad = u - torch.exp(parts.s) * u.sum(dim=1, keepdim=True)
        scale = reduction_scale(self.targets, self.reduction, grad.dtype)
        grad = torch.where(parts.keep, grad * scale, torch.zeros_like(grad))
        return loss, grad.to(z.dtype)

    def differentiable(self, z: Tensor) -> Tensor:
        loss = reduce_losses(self._parts(z).loss, self.targets, self.reduction)
        return loss.to(compute_dtype(z.dtype))

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        return grad_output.reshape(grad.shape[0], 1, grad.shape[2])


def normalized_loss(
    input: Tensor,
    target: Tensor,
    term: Term,
    *,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    smoothing: str,
) -> Tensor:
    """The normalized loss of ``term`` (see the module docstring) with PyTorch's reductions.

    ``mean`` divides by the summed class weights of the non-ignored targets (their number
    without weights) for class indices, or by ``N * d1 * ... * dn`` for probabilities.
    """
    input = check_input(input)
    reduction = checks.check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    target = checks.check_tensor("target", target)
    checks.check_devices(input, target=target, weight=weight)
    input, target, unbatched = as_batch(input, target)
    n, k = input.shape[0], input.shape[1]
    if k < 2:
        raise checks.fail("input", "to have at least 2 classes for a normalized loss", input)
    eps = check_smoothing(label_smoothing, smoothing, k)
    weight = checks.check_class_weight(weight, k)
    warn_if_probabilities(input)
    targets = prepare_targets(input, target, weight, None, ignore_index, eps, smoothing)
    problem = NormalizedProblem(targets, term, reduction, weight, eps, smoothing)
    z = input.contiguous().reshape(n, k, math.prod(input.shape[2:]))
    loss = run(problem, z, targets.probs, weight)
    if reduction == "none":
        loss = loss.reshape(n, *input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss
