r"""The fused linear layer + engine-term loss in the form ``torch.compile`` traces.

While ``torch.compile`` traces a model, :func:`crossent.linear.autograd.run_fused` hands an
engine-term call (:class:`crossent.linear.fused.FusedProblem`) to :class:`CompiledFusedLoss`:
the same sweep over chunks of rows as the eager path,

.. math::

    Z_c = X_c W^T + b, \qquad G_c = \partial \ell / \partial Z_c, \qquad
    \nabla_X[c] = G_c W, \qquad \nabla_W \mathrel{+}= G_c^T X_c, \qquad
    \nabla_b \mathrel{+}= \textstyle\sum_r G_c[r],

written with out-of-place operations only (each chunk through
:func:`crossent.engine.multiclass.dense_pass`): no host reads, no data-pointer tests, no
writes into buffers, so the compiler sees one graph (``fullgraph=True``) and schedules one
chunk's logits at a time. The gradients are formed in the forward sweep and scaled by
``grad_output`` in backward; ``reduction="none"`` sweeps again in backward with each row's
``grad_output``, as the eager path does. ``grad_W`` and ``grad_b`` are summed in the call's
accumulation dtype, ``grad_b`` from the float32 chunk gradient for half inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent.core.problem import reduce_losses
from crossent.engine.multiclass import dense_pass
from crossent.linear.buffers import Gradients
from crossent.linear.fused import chunk_targets

if TYPE_CHECKING:
    from crossent.linear.fused import FusedProblem


def compiled_sweep(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: FusedProblem,
    needs: tuple[bool, bool, bool],
    row_scale: Tensor | None = None,
) -> tuple[Tensor, Gradients]:
    """Per-element losses ``(N, D)`` and the gradients in ``needs`` (else ``None``).

    ``row_scale``: ``(N, D)`` factors of each element's gradient (the ``grad_output`` of
    ``reduction="none"``), or ``None``.
    """
    n, c, d = x.shape[0], problem.num_classes, problem.positions
    acc = problem.accumulate_dtype
    losses, grad_x = [], []
    grad_w: Tensor | None = None
    grad_b: Tensor | None = None
    for r0 in range(0, n, problem.chunk_rows):
        span = slice(r0, min(n, r0 + problem.chunk_rows))
        z = torch.nn.functional.linear(x[span], w, b).view(-1, c, d)
        loss, g = dense_pass(z, chunk_targets(problem.targets, span), problem.opts)
        losses.append(loss)
        if row_scale is not None:
            g = g * row_scale[span].unsqueeze(1).to(g.dtype)
        g = g.reshape(-1, c * d)
        if needs[2]:  # from the gradient in the compute dtype (float32 for half inputs)
            part = g.sum(0, dtype=acc)
            grad_b = part if grad_b is None else grad_b + part
        g = g.to(x.dtype)
        if needs[0]:
            grad_x.append(g @ w)
        if needs[1]:
            part = g.T.to(acc) @ x[span].to(acc)
            grad_w = part if grad_w is None else grad_w + part
    grads = (
        torch.cat(grad_x) if needs[0] else None,
        None if grad_w is None else grad_w.to(w.dtype),
        None if grad_b is None or b is None else grad_b.to(b.dtype),
    )
    return torch.cat(losses), grads


class CompiledFusedLoss(torch.autograd.Function):
    """The engine-term fused call as ``torch.compile`` traces it (see the module docstring)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, w: Tensor, b: Tensor | None, problem: FusedProblem
    ) -> Tensor:
        """The sweep: the loss, and the gradients unless ``reduction="none"``."""
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.problem, ctx.needs = problem, needs
        if problem.reduction == "none":
            losses, _ = compiled_sweep(x, w, b, problem, (False, False, False))
            ctx.save_for_backward(x, w, b)
            return losses
        losses, grads = compiled_sweep(x, w, b, problem, needs)
        ctx.save_for_backward(*grads)
        return reduce_losses(losses, problem.targets, problem.reduction)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        """Scale the stored gradients, or sweep again with each row's ``grad_output``."""
        if ctx.problem.reduction == "none":
            x, w, b = ctx.saved_tensors
            _, grads = compiled_sweep(x, w, b, ctx.problem, ctx.needs, row_scale=grad_output)
            return (*grads, None)
        scaled = (None if g is None else g * grad_output.to(g.dtype) for g in ctx.saved_tensors)
        return (*scaled, None)
