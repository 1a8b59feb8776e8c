"""Fast back ends of the term engine: one Triton kernel template for CUDA tensors.

The public loss functions dispatch here automatically: CUDA logits go to the kernel
(:mod:`crossent.kernels.triton_engine`) when Triton is installed and the call is one it
supports; everything else (CPU tensors, float64, a probability target that requires grad,
a term the template lacks) keeps the engine of :mod:`crossent.engine`. Results agree with
the engine to float rounding.

The one switch, :func:`set_backend` (initial value from the environment variable
``CROSSENT_BACKEND``):

* ``"auto"`` (default): the kernel for CUDA tensors when Triton is importable, else the engine;
* ``"triton"``: the kernel wherever it can run; a clear error when the tensors are on a
  device it cannot use (CPU tensors run only under ``TRITON_INTERPRET=1``, Triton's
  interpreter, which the tests use). Without a working Triton it warns once and falls back to
  the engine;
* ``"torch"``: always the engine.

Example:
    >>> import crossent.kernels
    >>> crossent.kernels.set_backend("torch")
    >>> crossent.kernels.get_backend()
    'torch'
    >>> crossent.kernels.set_backend("auto")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent.core import config
from crossent.core.autograd import has_tangent
from crossent.core.config import (
    BACKENDS,
    KernelUnavailableWarning,
    get_backend,
    interpreter_enabled,
    set_backend,
    triton_available,
)
from crossent.kernels._spec import term_spec

if TYPE_CHECKING:
    from crossent.core.problem import EngineOptions
    from crossent.core.targets import Targets

_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def can_run(tensor: Tensor) -> bool:
    """Whether the Triton kernel can run on ``tensor``'s device here."""
    if not triton_available():
        return False
    return tensor.is_cuda or (tensor.device.type == "cpu" and interpreter_enabled())


def _kernel_requested(tensor: Tensor) -> bool:
    """For ``backend="triton"``: whether the kernel runs (False: no Triton, warned once)."""
    if not triton_available():
        config.warn_no_triton()
        return False
    if not can_run(tensor):
        raise ValueError(
            f"Expected `input` on a CUDA device for the Triton backend (CPU tensors need "
            f"TRITON_INTERPRET=1), but got a tensor on {tensor.device}"
        )
    return True


def supports(z: Tensor, targets: Targets, opts: EngineOptions) -> bool:
    """Whether the kernel template computes this engine call (any device)."""
    others = (targets.probs, opts.weight, opts.class_scale)
    return (
        term_spec(opts.term) is not None
        and not config.transforms_active()  # torch.func: the differentiable formula
        and not has_tangent(z, *others)  # forward-mode AD: the differentiable formula
        and z.dtype in _KERNEL_DTYPES
        and z.numel() > 0
        and z.shape[0] * z.shape[2] < 2**31
        # gradients to targets or class weights: the differentiable formula gives them
        and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in others))
        and targets.span is None  # span smoothing: the engine's full path
    )


def use_kernel(z: Tensor, targets: Targets, opts: EngineOptions) -> bool:
    """Whether :func:`crossent.engine.term_loss` hands this call to the kernel.

    ``z`` is the ``(N, K, D)`` view of the logits after validation.
    """
    backend = get_backend()
    if backend == "torch":
        return False
    if backend == "triton":
        return _kernel_requested(z) and supports(z, targets, opts)
    return z.is_cuda and triton_available() and supports(z, targets, opts)


def term_loss(z: Tensor, targets: Targets, opts: EngineOptions) -> Tensor:
    """The engine call computed by the kernel: reduced loss, or ``(N, D)`` for ``"none"``."""
    from crossent.kernels import _calls

    return _calls.term_loss(z, targets, opts)


__all__ = [
    "BACKENDS",
    "KernelUnavailableWarning",
    "can_run",
    "get_backend",
    "interpreter_enabled",
    "set_backend",
    "supports",
    "triton_available",
    "use_kernel",
]
