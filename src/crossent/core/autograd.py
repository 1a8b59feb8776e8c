"""The autograd wrapper shared by the multiclass and binary engines.

The gradient is formed in the forward pass and stored (see :mod:`crossent.engine` for why);
the first backward hands it out (untouched when ``grad_output == 1``, else scaled in place)
and forgets it, so ``.grad`` never shares storage with a saved tensor; a second backward with
``retain_graph=True`` forms it again from the saved logits. In the opt-in in-place mode the
gradient lives in the logits' storage: their version counter is bumped in forward and a
second backward raises. Double backward (``create_graph=True``) differentiates the problem's
differentiable formula instead.

Autograd transforms: forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp``,
``jacfwd``) and every ``torch.func`` transform take the differentiable formula (see
:func:`takes_formula`), so a tangent is never dropped. A backward pass that runs under
``vmap`` (``torch.autograd.grad(..., is_grads_batched=True)``,
``torch.autograd.functional.jacobian(..., vectorize=True)``, ``gradcheck(...,
check_batched_grad=True)``), or whose ``grad_output`` carries a tangent, scales the
gradient out of place and reads nothing on the host (:func:`plain_grad_output`).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent.core import config
from crossent.core.threads import run_blocks


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# Beyond half of float32's range, s = x - lse(x) can overflow to -inf for a class that is not
# masked (x = -3e38 with lse = 3e38).
_FLOAT32_HALF_RANGE = torch.finfo(torch.float32).max / 2


def overflow_safe_dtype(z: Tensor) -> torch.dtype:
    """:func:`compute_dtype`, but float64 for float32 logits beyond half float32's range.

    For the losses that combine log-probabilities of every class (the normalized losses,
    the symmetric cross-entropy), whose value stays finite when some ``s`` overflows. The
    check reads one maximum on the host, so it is skipped while compiling or under a
    ``torch.func`` transform (there such logits overflow as in float32).
    """
    dtype = compute_dtype(z.dtype)
    if dtype != torch.float32 or config.tracing() or z.numel() == 0:
        return dtype
    wide = bool(z.detach().abs().amax() > _FLOAT32_HALF_RANGE)
    return torch.float64 if wide else dtype


def has_tangent(*tensors: Tensor | None) -> bool:
    """Whether forward-mode AD tracks one of ``tensors`` (a dual tensor at the current level)."""
    if fwAD._current_level < 0:  # no torch.autograd.forward_ad.dual_level is open
        return False
    return any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)


def takes_formula(inputs: tuple[Tensor | None, ...], others: tuple[Tensor | None, ...]) -> bool:
    """Whether a call must take its differentiable formula instead of the analytic gradient.

    ``inputs`` are the tensors the analytic gradient is formed for (the logits; the fused
    linear layer's input, weight and bias), ``others`` the call's other tensor inputs
    (probability targets, class weights, ``pos_weight``). True

    * while ``torch.compile`` traces (the formula is one branch-free graph for the compiler;
      no host reads, no in-place writes into saved buffers);
    * under a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ``jacfwd``, ...);
    * when forward-mode AD tracks any of them (a tangent: the formula carries it);
    * under grad mode when one of ``others`` requires grad: the formula gives gradients to all
      of them, as PyTorch does.
    """
    return (
        torch.compiler.is_compiling()
        or config.transforms_active()
        or has_tangent(*inputs, *others)
        or others_need_grad(others)
    )


def others_need_grad(others: tuple[Tensor | None, ...]) -> bool:
    """Whether grad mode is on and one of ``others`` (targets, class weights) requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in others)


def plain_grad_output(grad_output: Tensor) -> bool:
    """Whether a backward pass may scale in place and read ``grad_output`` on the host.

    False under ``vmap`` over the backward pass (a batched ``grad_output``: legacy
    ``torch._vmap_internals`` batching, as ``is_grads_batched=True`` and batched
    ``gradcheck`` use, or a ``torch.func`` transform) and when ``grad_output`` has a tangent
    (forward-over-reverse): then the gradient is scaled out of place, one operation that
    every transform sees.
    """
    return not (
        config.transforms_active()
        or torch._C._functorch.is_legacy_batchedtensor(grad_output)
        or has_tangent(grad_output)
    )


def scaled_copy(grad: Tensor, factor: Tensor) -> Tensor:
    """``grad * factor`` out of place, computed in ``grad``'s compute dtype (vmap-safe)."""
    cdt = compute_dtype(grad.dtype)
    return (grad.to(cdt) * factor.to(cdt)).to(grad.dtype)


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

    def block(r0: int) -> None:
        f = factor[r0 : r0 + rows] if factor.dim() else factor
        out[r0 : r0 + rows] = grad[r0 : r0 + rows].to(compute) * f

    run_blocks(range(0, n, rows), block)
    return out


def writes_in_place(input: Tensor, inplace_backward: object) -> bool:
    """Whether ``inplace_backward`` applies: to logits made by an operation, never to a leaf.

    A leaf (a parameter, or a tensor the caller made) keeps its values, and its ``.grad`` is a
    new buffer, as without ``inplace_backward``.
    """
    return bool(inplace_backward) and not input.is_leaf


class EngineFunction(torch.autograd.Function):
    """``loss = problem(z)`` with the analytic gradient computed in forward.

    The first backward hands the stored gradient out (scaled in place by ``grad_output``) and
    drops it, so the caller's ``.grad`` owns it and shares no storage with anything kept
    here. A later backward (``retain_graph=True``) forms it again from the saved logits.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor, problem: Problem) -> Tensor:
        """Compute the loss and store the gradient."""
        loss, grad = problem.compute(z, want_grad=True)
        ctx.problem, ctx.consumed, ctx.grad = problem, False, grad
        if problem.inplace_backward:
            # The logits now hold their gradient: bump their version so any saved use fails.
            torch.autograd.graph.increment_version(z)
        else:
            # Released after backward unless retained; version-checked when used (a later
            # backward, double backward).
            ctx.save_for_backward(z)
        return loss

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor, None]:
        """Hand out the stored gradient, scaled by ``grad_output``."""
        problem: Problem = ctx.problem
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula itself
            return _double_backward(ctx, grad_output), None
        plain = plain_grad_output(grad_output)
        if problem.inplace_backward:
            if ctx.consumed:
                raise RuntimeError(
                    "crossent: a second backward through a loss computed with "
                    "inplace_backward=True is not possible (its gradient lives in the logits' "
                    "storage and was already handed out). Use inplace_backward=False with "
                    "retain_graph=True."
                )
            ctx.consumed = True
            return _scaled(problem, ctx.grad.detach(), grad_output, plain), None
        grad, ctx.grad = ctx.grad, None  # the caller owns it from here
        if grad is None:  # handed out by an earlier backward (retain_graph): form it again
            (z,) = ctx.saved_tensors
            _, grad = problem.compute(z.detach(), want_grad=True)
        return _scaled(problem, grad, grad_output, plain), None


def _scaled(problem: Problem, grad: Tensor, grad_output: Tensor, plain: bool) -> Tensor:
    """The stored gradient times ``grad_output`` (per element for ``reduction='none'``).

    In place unless ``plain`` is False (a batched or dual ``grad_output``, see
    :func:`plain_grad_output`): then out of place, and without reading ``grad_output``.
    """
    if problem.reduction == "none":
        factor = problem.none_factor(grad_output, grad)
    elif not plain:
        factor = grad_output
    elif bool(grad_output == 1):
        return grad
    else:
        factor = grad_output
    return scale_gradient(grad, factor, inplace=True) if plain else scaled_copy(grad, factor)


def _double_backward(ctx: FunctionCtx, grad_output: Tensor) -> Tensor:
    problem: Problem = ctx.problem
    if problem.inplace_backward:
        raise RuntimeError(
            "crossent: double backward (create_graph=True) is not available with "
            "inplace_backward=True: the logits were overwritten by their gradient."
        )
    (z,) = ctx.saved_tensors  # the caller's logits, graph included (second order flows on)
    with torch.enable_grad():
        loss = problem.differentiable(z)
        (grad,) = torch.autograd.grad(loss, z, grad_output, create_graph=True)
    return grad
