r"""The binary / multi-label engine: the term engine at ``K = 2`` per element.

(docs/design.md, "One engine".) For a logit ``z`` and a target ``y`` in [0, 1] (smoothed to
``y (1 - eps) + eps / 2``):

.. math::

    s_1 = \log\sigma(z), \quad s_0 = \log\sigma(-z), \quad P = (1 - y, y),

    \ell = a_1 F_1(s_1, y) + a_0 F_0(s_0, 1 - y),

    \frac{\partial \ell}{\partial z}
        = a_1 G_1(s_1, y)\, \sigma(-z) - a_0 G_0(s_0, 1 - y)\, \sigma(z),

with one term ``(F_1, G_1)`` for the positive outcome and one ``(F_0, G_0)`` for the negative
(the same term for every loss but the asymmetric loss), ``a_1 = weight * pos_weight * c_1``
and ``a_0 = weight * c_0``: ``weight`` rescales each
element and ``pos_weight`` the positive term (PyTorch's ``binary_cross_entropy_with_logits``),
``(c_0, c_1)`` are balancing factors such as RetinaNet's ``(1 - alpha, alpha)``. ``mean`` is
the plain mean over elements, as in PyTorch. The gradient is formed in the forward pass in
blocks of rows, like the multiclass engine.

Hard labels (every ``y`` is 0 or 1, no smoothing) and terms that vanish where their
target is 0 take a fast path: only the true label's term is non-zero, so
with ``u = (2y - 1) z`` the logit of the true label and ``a_y`` its factor,

.. math::

    \ell = a_y F(\log\sigma(u), 1), \qquad
    \frac{\partial \ell}{\partial z} = (2y - 1)\, a_y\, G(\log\sigma(u), 1)\, \sigma(-u),

one log-sigmoid and one evaluation of ``F`` and ``G`` per element instead of two. Each
block of rows is checked (one pass over its targets, in cache) and takes this path if it
holds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crossent.core import checks, config
from crossent.core.autograd import compute_dtype, writes_in_place
from crossent.core.checks import fail
from crossent.core.targets import promote_to_target
from crossent.core.term import Term, value_where_target
from crossent.core.threads import run_blocks
from crossent.engine.chunks import weighted
from crossent.engine.multiclass import run

# Elements per block of rows (bounds float32 temporaries; a thread holds one block at a time).
# Blocks go to whichever thread is free: at (65536, 80), 2 threads, 2^19 measured best among
# 2^16..2^20 (sigmoid focal 0.055 s against 0.064 s at 2^20, ASL 0.086 s against 0.119 s).
BLOCK_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class _BinaryProblem:
    """One binary engine call (see :class:`crossent.core.autograd.Problem`)."""

    target: Tensor
    term: Term
    negative_term: Term
    weight: Tensor | None
    pos_weight: Tensor | None
    balance: tuple[float, float] | None
    reduction: str
    label_smoothing: float
    inplace_backward: bool = False
    hard_labels_allowed: bool = False  # no smoothing, terms vanishing where P = 0

    def _factors(self, rows: slice, shape: torch.Size, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(a_0, a_1)`` for a block of rows, broadcastable to the block."""
        device = self.target.device
        a0 = torch.ones((), dtype=dtype, device=device)
        a1 = a0
        if self.weight is not None:
            w = self.weight.to(dtype).broadcast_to(shape)[rows]
            a0, a1 = w, w
        if self.pos_weight is not None:
            a1 = a1 * self.pos_weight.to(dtype).broadcast_to(shape)[rows]
        if self.balance is not None:
            a0, a1 = a0 * self.balance[0], a1 * self.balance[1]
        return a0, a1

    def _has_factors(self) -> bool:
        """Whether ``a_0`` or ``a_1`` can differ from 1 (else the factors are not applied)."""
        return self.weight is not None or self.pos_weight is not None or self.balance is not None

    def _factors_may_vanish(self) -> bool:
        """Whether some ``a_0`` or ``a_1`` can be 0 (then ``0 * inf`` must give 0)."""
        zero_balance = self.balance is not None and 0.0 in self.balance
        return self.weight is not None or self.pos_weight is not None or zero_balance

    def _block(
        self, z: Tensor, rows: slice, grad_out: Tensor | None = None, scale: float = 1.0
    ) -> Tensor:
        """The block's per-element losses; with ``grad_out``, ``scale * dl/dz`` written there."""
        cdt = compute_dtype(z.dtype)
        x = z[rows].to(cdt)
        y = self.target[rows].to(cdt)
        a0, a1 = self._factors(rows, z.shape, cdt)
        if self.hard_labels_allowed and _is_hard(y):
            return self._hard_block(x, y, a0, a1, grad_out, scale)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / 2
        # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)), both stable.
        s1, s0 = F.logsigmoid(x), F.logsigmoid(-x)
        positive, negative = self.term, self.negative_term
        f1 = value_where_target(positive, s1, y)
        f0 = value_where_target(negative, s0, 1 - y)
        loss = weighted(a1, f1) + weighted(a0, f0)
        if grad_out is None:
            return loss
        g1, g0 = positive.grad(s1, y), negative.grad(s0, 1 - y)
        if positive.vanishes_where_target_zero:
            g1 = torch.where(y == 0, torch.zeros_like(g1), g1)
        if negative.vanishes_where_target_zero:
            g0 = torch.where(y == 1, torch.zeros_like(g0), g0)
        # dl/dz = a1 G1(s1, y) e^{s0} - a0 G0(s0, 1-y) e^{s1},  e^{s0} = sigmoid(-z)
        grad = weighted(a1, g1) * torch.exp(s0) - weighted(a0, g0) * torch.exp(s1)
        torch.mul(grad, scale, out=grad_out)
        return loss

    def _hard_block(
        self, x: Tensor, y: Tensor, a0: Tensor, a1: Tensor, grad_out: Tensor | None, scale: float
    ) -> Tensor:
        """A block with 0/1 labels: only the true label's term (see the module docstring)."""
        sign = y.mul(2).sub_(1)
        u = x * sign  # the true label's logit
        s = F.logsigmoid(u)
        f, g = self._true_label_terms(s, y, grad_out is not None)
        if self._has_factors():
            a = a0 if a0 is a1 else torch.lerp(a0.broadcast_to(y.shape), a1, y)
            f = weighted(a, f) if self._factors_may_vanish() else f * a
            g = None if g is None else g * a
        if g is None:
            return f
        # sigma(-u) = 1 - sigma(u): the probability of the other label; g may be a broadcast
        other = u.neg_().sigmoid_().mul_(g)
        zero = torch.zeros((), dtype=other.dtype, device=other.device)
        torch.addcmul(zero, other, sign, value=scale, out=grad_out)  # scale * sign * other
        return f

    def _true_label_terms(
        self, s: Tensor, y: Tensor, want_grad: bool
    ) -> tuple[Tensor, Tensor | None]:
        """``F(s, 1)`` and ``G(s, 1)`` of the true label's term at its log-probability ``s``.

        One term for both outcomes: evaluated once. Two (the asymmetric loss): each is
        evaluated on the block and the true label's is kept: ``lerp(negative's, positive's,
        y)`` picks one of them exactly where both are finite (``y`` is 0 or 1; the terms are
        finite at a finite ``s``), a select where some ``s`` is infinite (``0 * inf``).
        """
        one = torch.ones((), dtype=s.dtype, device=s.device)

        def evaluate(term: Term) -> tuple[Tensor, Tensor | None]:
            return term.value_and_grad(s, one) if want_grad else (term.value(s, one), None)

        f, g = evaluate(self.term)
        if self.negative_term is self.term:
            return f, g
        f0, g0 = evaluate(self.negative_term)
        low, high = torch.aminmax(s)
        if bool(torch.isfinite(low) & torch.isfinite(high)):
            f0 = _writable(f0, s.shape).lerp_(f, y)
            return f0, None if g0 is None else _writable(g0, s.shape).lerp_(g, y)
        negative = y == 0
        f = torch.where(negative, f0, f)
        return f, None if g is None else torch.where(negative, g0, g)

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        cdt = compute_dtype(z.dtype)
        # Per-element losses are kept only for reduction="none"; otherwise summed per block.
        keep = self.reduction == "none"
        losses = torch.empty(z.shape, dtype=cdt, device=z.device) if keep else None
        grad = None
        if want_grad and self.inplace_backward:
            grad = z
        elif want_grad:
            grad = torch.empty_like(z, memory_format=torch.contiguous_format)
        scale = 1.0 / z.numel() if (self.reduction == "mean" and z.numel()) else 1.0
        rows = max(1, BLOCK_ELEMENTS // max(1, math.prod(z.shape[1:]))) if z.dim() else 1
        n = z.shape[0] if z.dim() else 1
        blocks = [slice(r0, r0 + rows) for r0 in range(0, n, rows)] if z.dim() else [...]
        sums: list[Tensor | None] = [None] * len(blocks)  # per block, added in block order

        def work(i: int) -> None:
            block = blocks[i]  # a 0-dim input: all of it (...)
            loss = self._block(z, block, None if grad is None else grad[block], scale)
            if losses is not None:
                losses[block] = loss
            else:
                sums[i] = loss.sum()

        run_blocks(range(len(blocks)), work)
        if losses is not None:
            return losses, grad
        total = torch.zeros((), dtype=cdt, device=z.device)
        for part in sums:
            total += part
        return self._reduce_total(total, z.numel()), grad

    def differentiable(self, z: Tensor) -> Tensor:
        general = dataclasses.replace(self, hard_labels_allowed=False)  # graph-safe ops
        loss = general._block(z, slice(None) if z.dim() else ...)
        if self.reduction == "none":
            return loss
        return self._reduce_total(loss.sum(), loss.numel())

    def _reduce_total(self, total: Tensor, count: int) -> Tensor:
        """The ``sum`` or ``mean`` reduction from the sum of the losses."""
        if self.reduction == "mean" and count:
            return total / count
        return total

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        return grad_output


def _writable(t: Tensor, shape: torch.Size) -> Tensor:
    """A term's output as a tensor of ``shape`` that may be updated in place.

    Terms return fresh tensors, but a value may be a broadcast (a constant gradient).
    """
    if t.shape == shape and t.is_contiguous():
        return t
    return t.expand(shape).clone(memory_format=torch.contiguous_format)


def _is_hard(y: Tensor) -> bool:
    """Whether every target of a block is exactly 0 or 1 (``y - y^2 = 0``)."""
    if not y.numel():
        return False
    low, high = torch.aminmax(torch.addcmul(y, y, y, value=-1))
    return bool((low == 0) & (high == 0))


def _check_weights(name: str, value: Tensor | None, shape: torch.Size) -> Tensor | None:
    """An element or positive-class weight: broadcastable to the input, finite and ``>= 0``.

    The rule of the multiclass class weights (:func:`crossent.core.checks.check_class_weight`):
    PyTorch accepts negative weights, crossent rejects them (a negative weight turns a loss into
    a gain). The values are read unless :func:`crossent.set_validation` turned that off.
    """
    if value is None:
        return None
    checks.check_tensor(name, value)
    try:
        broadcast = torch.broadcast_shapes(value.shape, shape)
    except RuntimeError:
        broadcast = None
    if broadcast != shape:
        raise fail(name, f"to broadcast to the input shape {tuple(shape)}", value)
    if config.validate_args() and bool(((value < 0) | ~torch.isfinite(value)).any()):
        raise fail(name, "to be finite and >= 0 (negative weights are not supported)", value)
    return value


def binary_term_loss(
    input: Tensor,
    target: Tensor,
    term: Term,
    *,
    negative_term: Term | None = None,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    balance: tuple[float, float] | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    inplace_backward: bool = False,
) -> Tensor:
    """Any per-class term as a binary / multi-label loss on single logits.

    Args:
        input: logits of any shape.
        target: targets in [0, 1] of the same shape (0/1 labels or soft targets).
        term: the per-class term (:class:`crossent.terms.Term`) of the positive outcome, and of
            the negative one unless ``negative_term`` is given.
        negative_term: the term of the negative outcome (the asymmetric loss), or ``None``.
        weight: per-element rescaling, broadcastable to ``input``.
        pos_weight: multiplier of the positive term, broadcastable to ``input`` (e.g. ``(C,)``).
        balance: ``(c_0, c_1)`` factors of the negative and positive terms, or ``None``.
        reduction: ``"none" | "mean" | "sum"`` (``mean`` is the plain mean over elements).
        label_smoothing: ``eps`` in [0, 1]; targets move towards 1/2: ``y (1 - eps) + eps/2``.
        inplace_backward: write the gradient into ``input``'s storage.

    Returns:
        The reduced loss (float32 for half inputs), or per-element losses for ``"none"``.
    """
    checks.check_tensor("input", input)
    checks.check_floating("input", input)
    checks.check_tensor("target", target)
    checks.check_devices(input, target=target, weight=weight, pos_weight=pos_weight)
    input = promote_to_target(input, target)
    reduction = checks.check_reduction(reduction)
    eps = checks.check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    if target.shape != input.shape:
        raise fail("target", f"to have the shape of `input` {tuple(input.shape)}", target)
    if not target.is_floating_point():
        target = target.to(compute_dtype(input.dtype))
    elif config.validate_args():
        checks.check_unit_interval("target", target)
    weight = _check_weights("weight", weight, input.shape)
    pos_weight = _check_weights("pos_weight", pos_weight, input.shape)
    inplace_backward = writes_in_place(input, inplace_backward)
    if inplace_backward and not input.is_contiguous():
        raise fail("input", "to be contiguous with inplace_backward=True", input)
    negative_term = term if negative_term is None else negative_term
    hard = (
        eps == 0
        and term.vanishes_where_target_zero
        and negative_term.vanishes_where_target_zero
        and not target.requires_grad
    )
    problem = _BinaryProblem(
        target,
        term,
        negative_term,
        weight,
        pos_weight,
        balance,
        reduction,
        eps,
        inplace_backward,
        hard,
    )
    soft = target if target.requires_grad else None
    return run(problem, input, soft, weight, pos_weight)
