"""The autograd function of the fused linear losses, and the dispatch of one call.

A call is a :class:`LinearCall`: :class:`crossent.linear.fused.FusedProblem` for the losses
built on one engine term, :class:`crossent.linear.generic.GenericProblem` for every other
registry loss.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent.core.autograd import (
    others_need_grad,
    plain_grad_output,
    scale_gradient,
    scaled_copy,
    takes_formula,
)
from crossent.linear.buffers import Gradients


class LinearCall(Protocol):
    """One fused linear call: the loss and gradients of ``loss(X W^T + b)``."""

    def forward(
        self, x: Tensor, w: Tensor, b: Tensor | None, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor, Gradients | None]:
        """The loss, and the gradients in ``needs`` for ``grad_output = 1`` (or ``None``)."""
        ...

    def backward(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        needs: tuple[bool, bool, bool],
        grad_output: Tensor,
    ) -> Gradients:
        """The gradients in ``needs`` for this ``grad_output`` (a sweep of its own)."""
        ...

    def differentiable(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The unfused loss written with differentiable operations."""
        ...

    def traced(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The loss in the form ``torch.compile`` traces into one graph."""
        ...


class FusedLinearLoss(torch.autograd.Function):
    """``loss(X W^T + b)`` with every gradient formed in the forward sweep when it can be.

    The call (:class:`LinearCall`) has three
    methods: ``forward(x, w, b, needs)`` returns the loss and the gradients for
    ``grad_output = 1``, or ``None`` for them where they cannot be scaled afterwards (then
    ``backward(x, w, b, needs, grad_output)`` sweeps again); ``differentiable(x, w, b)`` is
    the loss on the full logits, for double backward.

    The first backward hands the stored gradients out (scaled in place) and forgets them, so
    no ``.grad`` shares storage with anything kept here; a later backward (``retain_graph``)
    sweeps again from the saved inputs.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        call: LinearCall,
    ) -> Tensor:
        """Run the sweep; keep the gradients (or only the inputs, for a later sweep)."""
        ctx.call = call
        ctx.needs = tuple(ctx.needs_input_grad[:3])
        loss, ctx.grads = call.forward(x, w, b, ctx.needs)
        ctx.swept = ctx.grads is not None
        # Released after backward unless retained; version-checked when used again.
        ctx.save_for_backward(x, w, b)
        return loss

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        """Scale the stored gradients by ``grad_output``, or sweep again with it."""
        call: LinearCall = ctx.call
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula itself
            return (*_formula_backward(ctx, grad_output, create_graph=True), None)
        plain = plain_grad_output(grad_output)
        x, w, b = ctx.saved_tensors
        if not ctx.swept:
            if not plain:  # the sweep writes into buffers: a batched grad_output cannot
                return (*_formula_backward(ctx, grad_output, create_graph=False), None)
            return (*call.backward(x, w, b, ctx.needs, grad_output), None)
        grads, ctx.grads = ctx.grads, None  # the caller owns them from here
        if grads is None:  # handed out by an earlier backward (retain_graph): sweep again
            _, grads = call.forward(x, w, b, ctx.needs)
        if not plain:  # vmap over backward, or a dual grad_output: out of place
            return (*(None if g is None else scaled_copy(g, grad_output) for g in grads), None)
        if bool(grad_output == 1):
            return (*grads, None)
        scaled = (None if g is None else scale_gradient(g, grad_output, True) for g in grads)
        return (*scaled, None)


def _formula_backward(
    ctx: FunctionCtx, grad_output: Tensor, create_graph: bool
) -> tuple[Tensor | None, ...]:
    """The gradients from the differentiable formula on the full logits.

    For double backward (``create_graph=True``) and for a batched ``grad_output`` of a call
    whose gradients are formed in backward (``reduction="none"``, a set loss's per-class
    output), which the chunk sweep cannot scale.
    """
    inputs = ctx.saved_tensors
    wanted = [t for t, need in zip(inputs, ctx.needs, strict=True) if need]
    with torch.enable_grad():
        loss = ctx.call.differentiable(*inputs)
        grads = iter(torch.autograd.grad(loss, wanted, grad_output, create_graph=create_graph))
    return tuple(next(grads) if need else None for need in ctx.needs)


def run_fused(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    call: LinearCall,
    *others: Tensor | None,
) -> Tensor:
    """Dispatch one fused call: differentiable fallback, fused gradients, or loss only.

    ``others`` are the loss's other tensor inputs (targets, class weights, ``pos_weight``, ...).

    * ``torch.compile`` tracing (and none of ``others`` requires grad): ``call.traced``, the
      form the compiler sees as one graph (:mod:`crossent.linear.compiled` for the
      engine-term losses; the loss on the full logits for the others);
    * one of ``others`` requires grad, a tangent of forward-mode AD, or a ``torch.func``
      transform: the unfused differentiable formula (gradients to all);
    * an input, weight or bias that requires grad under grad mode: :class:`FusedLinearLoss`;
    * otherwise (``no_grad``, inference): the loss alone, one matrix product per chunk.

    Returns the reduced loss, or the per-element losses for ``"none"``.
    """
    if torch.compiler.is_compiling() and not others_need_grad(others):
        return call.traced(x, w, b)
    if takes_formula((x, w, b), others):
        return call.differentiable(x, w, b)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return FusedLinearLoss.apply(x, w, b, call)
    detached = (x.detach(), w.detach(), None if b is None else b.detach())
    with torch.no_grad():
        return call.forward(*detached, (False, False, False))[0]
