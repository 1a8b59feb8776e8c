"""The kernel launches as plain functions and as custom operators.

``torch.compile`` sees each launch as one operator (``torch.ops.crossent.*``, with a fake
implementation for shapes and, for ``crossent::term_loss``, a registered backward), so a
compiled model has no graph break at the loss. Eager calls use the plain functions (see
:mod:`crossent.kernels._calls`). :func:`loss_and_grad_inplace` is the building block of the
fused linear + loss.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent.core.targets import smoothing_levels
from crossent.core.term import Term
from crossent.kernels._launch import PATH_FAST, PATH_FULL, PATH_LINEAR, Problem, launch
from crossent.kernels._spec import TermSpec, term_spec
from crossent.kernels.triton_engine import MODE_FUSED, MODE_GRAD, MODE_LOSS, rescale_kernel

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_RESCALE_BLOCK = 4096


def _problem(params: list[float], flags: list[int]) -> Problem:
    """Rebuild the launch settings from the operators' flat arguments."""
    a0, a1, a2, on, off, p_mul, p_add, z_loss = params
    code, path, soft, vanishes, has_weight, has_smooth = flags
    spec = TermSpec(code, a0, a1, a2, bool(vanishes))
    return Problem(
        spec, path, bool(soft), bool(has_weight), on, off, p_mul, p_add, bool(has_smooth), z_loss
    )


def _device(z: Tensor) -> AbstractContextManager[Any]:
    return torch.cuda.device(z.device) if z.is_cuda else nullcontext()


def _rows(z: Tensor) -> int:
    return z.shape[0] * z.shape[2]


def _new_outputs(z: Tensor) -> tuple[Tensor, Tensor]:
    """Empty float32 per-row losses ``(R,)`` and statistics ``(R, 3)``: ``(m, log d, S)``."""
    rows = _rows(z)
    return z.new_empty(rows, dtype=torch.float32), z.new_empty((rows, 3), dtype=torch.float32)


def forward_stats(
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    params: list[float],
    flags: list[int],
) -> tuple[Tensor, Tensor]:
    """Per-row losses ``(R,)`` and statistics ``(R, 3)`` of ``(N, K, D)`` logits (one launch)."""
    losses, stats = _new_outputs(z)
    with _device(z):
        problem = _problem(params, flags)
        launch(
            MODE_LOSS, z, z, target, elem_weight, class_weight, losses, stats, None, 1.0, problem
        )
    return losses, stats


def backward_grad(
    grad_losses: Tensor,
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    stats: Tensor,
    params: list[float],
    flags: list[int],
) -> Tensor:
    """``d(sum_r grad_losses[r] * loss[r]) / dz`` from the saved statistics (one launch)."""
    grad = torch.empty_like(z)
    gl = grad_losses.to(torch.float32).contiguous()
    with _device(z):
        problem = _problem(params, flags)
        launch(MODE_GRAD, z, grad, target, elem_weight, class_weight, gl, stats, gl, 1.0, problem)
    return grad


def fused_inplace(
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    scale: Tensor,
    params: list[float],
    flags: list[int],
) -> Tensor:
    """Per-row losses; the gradient times ``scale`` (0-dim) written over ``z`` (one launch)."""
    losses, stats = _new_outputs(z)
    with _device(z):
        problem = _problem(params, flags)
        launch(
            MODE_FUSED, z, z, target, elem_weight, class_weight, losses, stats, scale, 1.0, problem
        )
    return losses


def rescale_rows(grad: Tensor, grad_losses: Tensor, base: Tensor) -> None:
    """``grad[row] *= grad_losses[row] / base`` for the rows where that factor is not 1."""
    n, k, d = grad.shape
    with _device(grad):
        rescale_kernel[(n * d,)](
            grad, grad_losses.to(torch.float32), base, n * d, k, d,
            grad.stride(0), grad.stride(2), grad.stride(1), grad_losses.stride(0),
            BLOCK=_RESCALE_BLOCK, num_warps=8,
        )  # fmt: skip


term_loss_op = torch.library.custom_op("crossent::term_loss", forward_stats, mutates_args=())


@term_loss_op.register_fake
def _term_loss_fake(
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    params: list[float],
    flags: list[int],
) -> tuple[Tensor, Tensor]:
    return _new_outputs(z)


term_loss_backward_op = torch.library.custom_op(
    "crossent::term_loss_backward", backward_grad, mutates_args=()
)


@term_loss_backward_op.register_fake
def _term_loss_backward_fake(
    grad_losses: Tensor,
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    stats: Tensor,
    params: list[float],
    flags: list[int],
) -> Tensor:
    return torch.empty_like(z)


def _setup_context(
    ctx: FunctionCtx, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]
) -> None:
    z, target, elem_weight, class_weight, params, flags = inputs
    ctx.save_for_backward(z, target, elem_weight, class_weight, output[1])
    ctx.params, ctx.flags = params, flags


def no_double_backward() -> None:
    """Raise in a backward pass asked to build a graph (``create_graph=True``)."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "crossent: double backward (create_graph=True) is not available through the "
            "Triton kernel; call crossent.kernels.set_backend('torch') for losses that need it."
        )


def _backward(ctx: FunctionCtx, grad_losses: Tensor, grad_stats: Tensor) -> tuple[Any, ...]:
    no_double_backward()
    z, target, elem_weight, class_weight, stats = ctx.saved_tensors
    grad = term_loss_backward_op(
        grad_losses, z, target, elem_weight, class_weight, stats, ctx.params, ctx.flags
    )
    return grad, None, None, None, None, None


term_loss_op.register_autograd(_backward, setup_context=_setup_context)


term_loss_inplace_op = torch.library.custom_op(
    "crossent::term_loss_inplace_", fused_inplace, mutates_args={"z"}
)


@term_loss_inplace_op.register_fake
def _term_loss_inplace_fake(
    z: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    scale: Tensor,
    params: list[float],
    flags: list[int],
) -> Tensor:
    return z.new_empty(_rows(z), dtype=torch.float32)


rescale_rows_op = torch.library.custom_op(
    "crossent::rescale_rows_", rescale_rows, mutates_args={"grad"}
)


@rescale_rows_op.register_fake
def _rescale_rows_fake(grad: Tensor, grad_losses: Tensor, base: Tensor) -> None:
    return None


def class_weight_vector(
    weight: Tensor | None, class_scale: Tensor | None, device: torch.device
) -> Tensor | None:
    """``w_k * class_scale_k`` as the kernel reads it: contiguous float32 ``(K,)``, or ``None``.

    The kernel indexes it by class (``w_ptr + k``), so a strided or expanded vector is copied.
    """
    out = None
    for vec in (weight, class_scale):
        if vec is not None:
            v = vec.to(dtype=torch.float32, device=device)
            out = v if out is None else out * v
    return None if out is None else out.contiguous()


def loss_and_grad_inplace(
    logits: Tensor,
    target: Tensor,
    term: Term,
    *,
    weight: Tensor | None = None,
    class_scale: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    grad_scale: Tensor | float = 1.0,
) -> Tensor:
    """Per-row losses of a chunk of logits, whose gradient is written over the logits.

    The building block of the fused linear + loss: one launch reads a ``(R, K)`` chunk once
    (twice for long rows), returns ``loss[r] = sum_k w_k F(s_k, P_k) (+ lam lse^2)`` in
    float32 (0 for ignored rows) and overwrites ``logits`` with
    ``grad_scale * d loss[r] / d logits[r]`` in their dtype. No validation and no version
    bump: the caller owns the buffer and has checked the arguments.

    Args:
        logits: ``(R, K)`` float32/bf16/fp16 on a device the kernel runs on
            (:func:`crossent.kernels.can_run`); rows may be strided, classes contiguous or not.
        target: ``(R,)`` class indices (``ignore_index`` allowed) or ``(R, K)`` soft targets.
        term: the per-class term (:mod:`crossent.terms`).
        weight: class weights ``(K,)``.
        class_scale: per-class multiplier ``(K,)`` outside the mean's denominator (focal alpha).
        ignore_index: ignored class index (index targets).
        label_smoothing: ``eps`` in [0, 1].
        smoothing: ``"uniform"`` or ``"others"``.
        z_loss: coefficient of ``lse^2``.
        grad_scale: factor of the written gradient, a float or a 0-dim float32 device tensor
            (e.g. ``grad_output / denominator``, no host synchronisation).

    Returns:
        ``(R,)`` float32 per-row losses (unscaled).

    Example:
        >>> # chunk = x_c @ W.T; rows = loss_and_grad_inplace(chunk, t_c, CrossEntropyTerm(),
        >>> #                                                  grad_scale=1 / n_valid)
        >>> # chunk now holds d(mean loss)/d(chunk); grad_x[c] = chunk @ W
    """
    spec = term_spec(term)
    if spec is None:
        raise ValueError(f"Expected a term the kernel template supports, but got {term!r}")
    z = logits.unsqueeze(2)
    k = z.shape[1]
    eps = float(label_smoothing)
    soft = target.is_floating_point()
    path = PATH_FAST if (not soft and eps == 0 and spec.vanishes) else PATH_FULL
    path = PATH_LINEAR if (path == PATH_FULL and spec.linear) else path
    class_weight, elem_weight, on, off = None, None, 0.0, 0.0
    if soft:
        tgt = target.unsqueeze(2)
    else:
        t = target.reshape(-1).to(torch.int64)
        valid = t != ignore_index
        tgt = torch.where(valid, t, -1)
        off, on = smoothing_levels(eps, smoothing, k)
        if path == PATH_FAST:
            elem_weight = valid.to(torch.float32)
            safe = torch.where(valid, t, 0)
            for vec in (weight, class_scale):
                if vec is not None:
                    elem_weight = elem_weight * vec.to(torch.float32)[safe]
    if path != PATH_FAST:
        class_weight = class_weight_vector(weight, class_scale, z.device)
    problem = Problem(
        spec, path, soft, class_weight is not None, on, off, 1.0 - eps, eps / k,
        soft and eps > 0, float(z_loss),
    )  # fmt: skip
    losses, stats = _new_outputs(z)
    scale_t = grad_scale if isinstance(grad_scale, Tensor) else None
    scale_mul = 1.0 if scale_t is not None else float(grad_scale)
    with _device(z):
        launch(
            MODE_FUSED, z, z, tgt, elem_weight, class_weight, losses, stats,
            scale_t.to(torch.float32) if scale_t is not None else None, scale_mul, problem,
        )  # fmt: skip
    return losses
