"""Fast back ends of the term engine: one Triton kernel template for CUDA tensors.

The public loss functions dispatch here automatically: CUDA logits go to the kernel
(:mod:`crossent.kernels.triton_engine`) when Triton is installed and the call is one it
supports; everything else (CPU tensors, float64, a probability target that requires grad,
a term the template lacks) keeps the engine of :mod:`crossent.engine`. Results agree with
the engine to float rounding.

The one switch, :func:`set_backend` (initial value from the environment variable
``CROSSENT_BACKEND``):

* ``"auto"`` (default): the kernel for CUDA tensors when Triton is importable, else the engine;
* ``"triton"``: the kernel wherever it can run; a clear error when Triton is missing or the
  tensors are on a device it cannot use (CPU tensors run only under ``TRITON_INTERPRET=1``,
  Triton's interpreter, which the tests use);
* ``"torch"``: always the engine.

Example:
    >>> import crossent.kernels
    >>> crossent.kernels.set_backend("torch")
    >>> crossent.kernels.get_backend()
    'torch'
    >>> crossent.kernels.set_backend("auto")
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from crossent import _checks
from crossent.kernels._spec import term_spec

if TYPE_CHECKING:
    from crossent._targets import Targets
    from crossent.engine import EngineOptions

BACKENDS = ("auto", "triton", "torch")
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_state = {"backend": os.environ.get("CROSSENT_BACKEND", "auto")}
_TRITON_FOUND = importlib.util.find_spec("triton") is not None


def set_backend(backend: str) -> None:
    """Choose where multiclass losses run: ``"auto"``, ``"triton"`` or ``"torch"``.

    Args:
        backend: ``"auto"`` (kernel for CUDA tensors when Triton is installed), ``"triton"``
            (the kernel wherever it can run, an error where it cannot) or ``"torch"`` (the
            PyTorch engine everywhere).

    Raises:
        ValueError: an unknown name.
    """
    _checks.check_choice("backend", backend, BACKENDS)
    _state["backend"] = backend


def get_backend() -> str:
    """The current backend name (see :func:`set_backend`)."""
    return _state["backend"]


def triton_available() -> bool:
    """Whether Triton is installed (looked up once, at import, without importing it)."""
    return _TRITON_FOUND


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is switched on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def can_run(tensor: Tensor) -> bool:
    """Whether the Triton kernel can run on ``tensor``'s device here."""
    if not triton_available():
        return False
    return tensor.is_cuda or (tensor.device.type == "cpu" and interpreter_enabled())


def _require_kernel(tensor: Tensor) -> None:
    if not triton_available():
        raise RuntimeError(
            "crossent: the Triton backend was requested (crossent.kernels.set_backend('triton') "
            "or CROSSENT_BACKEND=triton) but Triton is not installed. Install it with "
            "`pip install 'crossent[gpu]'`, or use set_backend('auto') to fall back to the "
            "PyTorch engine."
        )
    if not can_run(tensor):
        raise ValueError(
            f"Expected `input` on a CUDA device for the Triton backend (CPU tensors need "
            f"TRITON_INTERPRET=1), but got a tensor on {tensor.device}"
        )


def supports(z: Tensor, targets: Targets, opts: EngineOptions) -> bool:
    """Whether the kernel template computes this engine call (any device)."""
    probs = targets.probs
    return (
        term_spec(opts.term) is not None
        and z.dtype in _KERNEL_DTYPES
        and z.numel() > 0
        and z.shape[0] * z.shape[2] < 2**31
        and not (probs is not None and probs.requires_grad and torch.is_grad_enabled())
    )


def use_kernel(z: Tensor, targets: Targets, opts: EngineOptions) -> bool:
    """Whether :func:`crossent.engine.term_loss` hands this call to the kernel.

    ``z`` is the ``(N, K, D)`` view of the logits after validation.
    """
    backend = get_backend()
    if backend == "torch":
        return False
    if backend == "triton":
        _require_kernel(z)
        return supports(z, targets, opts)
    return z.is_cuda and triton_available() and supports(z, targets, opts)


def term_loss(z: Tensor, targets: Targets, opts: EngineOptions) -> Tensor:
    """The engine call computed by the kernel: reduced loss, or ``(N, D)`` for ``"none"``."""
    from crossent.kernels import _calls

    return _calls.term_loss(z, targets, opts)


__all__ = [
    "BACKENDS",
    "can_run",
    "get_backend",
    "interpreter_enabled",
    "set_backend",
    "supports",
    "triton_available",
    "use_kernel",
]
