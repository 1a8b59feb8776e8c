"""The autograd wrapper shared by the multiclass and binary engines.

The gradient is formed in the forward pass and stored (see :mod:`crossent.engine` for why);
backward hands it out untouched when ``grad_output == 1`` and scales a copy otherwise, so a
second backward with ``retain_graph=True`` is correct. In the opt-in in-place mode the
gradient lives in the logits' storage: their version counter is bumped in forward and a
second backward raises. Double backward (``create_graph=True``) differentiates the problem's
differentiable formula instead.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# Elements per chunk when scaling a stored gradient (bounds float32 temporaries).
_SCALE_CHUNK = 1 << 20


class Problem(Protocol):
    """One engine call: knows how to compute its loss, gradient and differentiable form."""

    reduction: str
    inplace_backward: bool

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        """Reduced loss and the gradient (shaped like ``z``) or ``None``."""
        ...

    def differentiable(self, z: Tensor) -> Tensor:
        """Reduced loss written with autograd-differentiable operations."""
        ...

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        """``grad_output`` of ``reduction='none'`` reshaped to broadcast against ``grad``."""
        ...


def scale_gradient(grad: Tensor, factor: Tensor, inplace: bool) -> Tensor:
    """``grad * factor`` in ``grad``'s dtype; ``factor`` is 0-dim or has ``grad``'s dim 0.

    Half-precision gradients are scaled in float32 one block of rows at a time (an AMP loss
    scale such as 65536 does not fit in fp16).
    """
    out = grad if inplace else torch.empty_like(grad)
    compute = compute_dtype(grad.dtype)
    factor = factor.to(compute)
    n = grad.shape[0] if grad.dim() else 1
    if grad.dim() == 0 or grad.numel() == 0:
        return out.copy_(grad.to(compute) * factor)
    rows = max(1, _SCALE_CHUNK // max(1, grad[0].numel()))
    for r0 in range(0, n, rows):
        f = factor[r0 : r0 + rows] if factor.dim() else factor
        out[r0 : r0 + rows] = grad[r0 : r0 + rows].to(compute) * f
    return out


class EngineFunction(torch.autograd.Function):
    """``loss = problem(z)`` with the analytic gradient computed in forward."""

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor, problem: Problem) -> Tensor:
        """Compute the loss and store the gradient."""
        loss, grad = problem.compute(z, want_grad=True)
        ctx.problem, ctx.consumed = problem, False
        if problem.inplace_backward:
            # The logits now hold their gradient: bump their version so any saved use fails.
            torch.autograd.graph.increment_version(z)
            ctx.grad_buffer = grad
        else:
            ctx.save_for_backward(grad)  # an intermediate: released after backward
            ctx.logits = z  # for double backward only (a reference, not a copy)
        return loss

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor, None]:
        """Hand out the stored gradient, scaled by ``grad_output``."""
        problem: Problem = ctx.problem
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula itself
            return _double_backward(ctx, grad_output), None
        if problem.inplace_backward:
            if ctx.consumed:
                raise RuntimeError(
                    "crossent: a second backward through a loss computed with "
                    "inplace_backward=True is not possible (its gradient lives in the logits' "
                    "storage and was already handed out). Use inplace_backward=False with "
                    "retain_graph=True."
                )
            ctx.consumed = True
            grad = ctx.grad_buffer.detach()
        else:
            (grad,) = ctx.saved_tensors
        if problem.reduction == "none":
            factor = problem.none_factor(grad_output, grad)
        elif bool(grad_output == 1):
            return grad, None
        else:
            factor = grad_output
        return scale_gradient(grad, factor, inplace=problem.inplace_backward), None


def _double_backward(ctx: FunctionCtx, grad_output: Tensor) -> Tensor:
    problem: Problem = ctx.problem
    if problem.inplace_backward:
        raise RuntimeError(
            "crossent: double backward (create_graph=True) is not available with "
            "inplace_backward=True: the logits were overwritten by their gradient."
        )
    with torch.enable_grad():
        z = ctx.logits
        loss = problem.differentiable(z)
        (grad,) = torch.autograd.grad(loss, z, grad_output, create_graph=True)
    return grad
