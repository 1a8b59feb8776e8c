"""One engine call through the kernel template, with its autograd.

When the gradient is formed (docs/design.md, "GPU kernels"):

* default: the forward pass reads the logits once and saves per-row statistics
  ``(m, log d, S)`` in float32; the backward pass reads the logits again and writes the gradient
  with ``grad_output`` folded in. 2 reads + 1 write in all, no host synchronisation, the
  logits untouched (``retain_graph=True`` and ``reduction="none"`` need nothing special),
  and under ``torch.no_grad()`` only the cheap forward runs.
* ``inplace_backward=True``: one fused launch writes the gradient over the logits in the
  forward pass, with the reduction's factor applied; the logits' version counter is bumped
  (PyTorch's own check then raises if another operation saved them). Backward rescales rows
  only when ``grad_output`` differs from what was assumed, a check made on the device.

Under ``torch.compile`` the launches go through the custom operators of
:mod:`crossent.kernels.ops` (one opaque operator each, no graph break); in eager mode the
same launches are called from light ``autograd.Function`` s, which skip the operator
dispatcher's Python overhead (about half of the host time of a call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent.core.autograd import plain_grad_output, scaled_copy
from crossent.core.problem import reduction_scale
from crossent.core.targets import smoothing_levels
from crossent.kernels import ops
from crossent.kernels._launch import PATH_FAST, PATH_FULL, PATH_LINEAR
from crossent.kernels._spec import TermSpec, term_spec

if TYPE_CHECKING:
    from crossent.core.problem import EngineOptions
    from crossent.core.targets import Targets


class _TermLoss(torch.autograd.Function):
    """Eager twin of ``crossent::term_loss`` with its registered backward."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        z: Tensor,
        target: Tensor,
        elem_weight: Tensor | None,
        class_weight: Tensor | None,
        params: list[float],
        flags: list[int],
    ) -> Tensor:
        losses, stats = ops.forward_stats(z, target, elem_weight, class_weight, params, flags)
        ctx.save_for_backward(z, target, elem_weight, class_weight, stats)
        ctx.extra = (params, flags)
        return losses

    @staticmethod
    def backward(ctx: FunctionCtx, grad_losses: Tensor) -> tuple[Any, ...]:
        ops.no_double_backward()
        z, target, elem_weight, class_weight, stats = ctx.saved_tensors
        plain = plain_grad_output(grad_losses)
        # vmap over backward: the launch takes no batched tensor; form the gradient for
        # grad_losses = 1 and scale it out of place (each row's gradient is linear in it).
        gl = grad_losses if plain else torch.ones(grad_losses.shape, device=z.device)
        grad = ops.backward_grad(gl, z, target, elem_weight, class_weight, stats, *ctx.extra)
        return (grad if plain else scaled_copy(grad, _row_factor(grad_losses, z))), *_NONE5


class _InplaceTermLoss(torch.autograd.Function):
    """Loss whose gradient is written over the logits in the forward pass."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        z: Tensor,
        target: Tensor,
        elem_weight: Tensor | None,
        class_weight: Tensor | None,
        base: Tensor,
        params: list[float],
        flags: list[int],
    ) -> Tensor:
        if torch.compiler.is_compiling():
            # the operator is declared as mutating z: it bumps the version counter itself
            losses = ops.term_loss_inplace_op(
                z, target, elem_weight, class_weight, base, params, flags
            )
        else:
            losses = ops.fused_inplace(z, target, elem_weight, class_weight, base, params, flags)
            # Triton's writes are invisible to autograd: mark the logits as modified
            torch.autograd.graph.increment_version(z)
        ctx.grad_buffer, ctx.base, ctx.consumed = z, base, False
        return losses

    @staticmethod
    def backward(ctx: FunctionCtx, grad_losses: Tensor) -> tuple[Any, ...]:
        ops.no_double_backward()
        if ctx.consumed:
            raise RuntimeError(
                "crossent: a second backward through a loss computed with "
                "inplace_backward=True is not possible (its gradient lives in the logits' "
                "storage and was already handed out). Use inplace_backward=False with "
                "retain_graph=True."
            )
        ctx.consumed = True
        grad = ctx.grad_buffer.detach()
        if not plain_grad_output(grad_losses):  # vmap over backward: scale out of place
            return scaled_copy(grad, _row_factor(grad_losses / ctx.base, grad)), *_NONE5, None
        if torch.compiler.is_compiling():
            ops.rescale_rows_op(grad, grad_losses, ctx.base)
        else:
            ops.rescale_rows(grad, grad_losses, ctx.base)
        return grad, None, None, None, None, None, None


_NONE5 = (None,) * 5


def _row_factor(grad_losses: Tensor, z: Tensor) -> Tensor:
    """Per-row ``grad_losses`` ``(N * D,)`` shaped to broadcast against ``(N, K, D)``."""
    return grad_losses.reshape(z.shape[0], 1, z.shape[2])


def _launch_args(
    spec: TermSpec, targets: Targets, opts: EngineOptions, k: int
) -> tuple[Tensor, Tensor | None, Tensor | None, list[float], list[int]]:
    """Target tensor, per-row weights, class multipliers and flat settings of one call."""
    eps = opts.label_smoothing
    soft = targets.index is None
    fast = opts.fast_path(targets)
    path = PATH_FAST if fast else (PATH_LINEAR if spec.linear else PATH_FULL)
    if soft:
        target, on, off = targets.probs, 0.0, 0.0
    else:
        target = torch.where(targets.valid, targets.index, -1).reshape(-1)
        off, on = smoothing_levels(eps, opts.smoothing, k)
    elem_weight = targets.elem_weight.reshape(-1).to(torch.float32) if fast else None
    class_weight = None
    if not fast:
        class_weight = ops.class_weight_vector(opts.weight, opts.class_scale, target.device)
    params = [spec.a0, spec.a1, spec.a2, on, off, 1.0 - eps, eps / k, opts.z_loss]
    flags = [spec.code, path, int(soft), int(spec.vanishes), int(class_weight is not None)]
    flags.append(int(soft and eps > 0))
    return target, elem_weight, class_weight, params, flags


def term_loss(z: Tensor, targets: Targets, opts: EngineOptions) -> Tensor:
    """One engine call through the kernel; ``z`` is the ``(N, K, D)`` view of the logits.

    Returns the reduced loss (float32 for half inputs), or ``(N, D)`` losses for ``"none"``.
    """
    n, k, d = z.shape
    spec = term_spec(opts.term)
    args = _launch_args(spec, targets, opts, k)
    mean = opts.reduction == "mean"
    scale = reduction_scale(targets, "mean", torch.float32) if mean else None
    compiling = torch.compiler.is_compiling()
    if not (torch.is_grad_enabled() and z.requires_grad):
        losses, _ = (ops.term_loss_op if compiling else ops.forward_stats)(z.detach(), *args)
    elif opts.inplace_backward:
        base = scale if mean else torch.ones((), dtype=torch.float32, device=z.device)
        losses = _InplaceTermLoss.apply(z, *args[:3], base, *args[3:])
    elif compiling:
        losses, _ = ops.term_loss_op(z, *args)
    else:
        losses = _TermLoss.apply(z, *args)
    if opts.reduction == "none":
        return losses.reshape(n, d)
    total = losses.sum()
    return total * scale if mean else total
