"""The library's explicit, documented switches (its only global state).

* ``validate_args`` — checks that read tensor contents (class-index range, target values,
  class weights). On by default; turn off in hot loops once inputs are known good. (NaN
  logits are not looked for: they give NaN, as in PyTorch.)
* ``warn_probabilities`` — the double-softmax diagnostic: a warning when logits look like
  probabilities. On by default; it never changes a result.

* ``backend`` — where the multiclass losses run: ``"auto"`` (the Triton kernel template for
  CUDA tensors when Triton imports, else the PyTorch engine), ``"triton"`` or ``"torch"``
  (:func:`set_backend`, initial value from the environment variable ``CROSSENT_BACKEND``;
  :mod:`crossent.kernels` dispatches on it). Whether Triton imports is found once, on first
  need, and kept here too.

The first two read tensor values on the host, so neither runs while ``torch.compile`` traces a loss
(no graph break); there, class indices are checked by a device-side assert instead. Nor do
they run under ``torch.func`` transforms (``grad``, ``vmap``, ...), where a loss takes its
differentiable formula and an out-of-range class index fails in PyTorch's own indexing.

Example:
    >>> import crossent
    >>> crossent.set_validation(False)
    >>> crossent.config.validate_args()
    False
    >>> crossent.set_validation(True)
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

BACKENDS = ("auto", "triton", "torch")


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ...) is running.

    Its tensors cannot be read on the host under ``vmap``, and an ``autograd.Function``
    without ``setup_context`` is refused: the losses then take their differentiable formula
    and the content checks step aside, as while compiling.
    """
    return torch._C._are_functorch_transforms_active()


def tracing() -> bool:
    """Whether tensor contents cannot be read on the host (compiling or a transform)."""
    return torch.compiler.is_compiling() or transforms_active()


def validate_args() -> bool:
    """Whether checks that read tensor contents run (never while ``torch.compile`` traces).

    Those checks need the values on the host (a synchronisation, a graph break); a compiled
    loss relies on :func:`device_assertions` instead.
    """
    return _state["validate_args"] and not tracing()


def device_assertions() -> bool:
    """Whether a compiled loss checks class indices with device-side asserts (no host sync).

    On while ``torch.compile`` traces with validation on: an index out of range then fails
    with a ``RuntimeError`` at run time instead of the eager ``ValueError``.
    """
    return _state["validate_args"] and torch.compiler.is_compiling()


def warn_probabilities() -> bool:
    """Whether the double-softmax warning is on (never while ``torch.compile`` traces)."""
    return _state["warn_probabilities"] and not tracing()


def set_validation(enabled: bool) -> None:
    """Turn the content checks (label range, target values, class weights) on or off."""
    _state["validate_args"] = bool(enabled)


def set_probability_warning(enabled: bool) -> None:
    """Turn the double-softmax warning (logits that look like probabilities) on or off."""
    _state["warn_probabilities"] = bool(enabled)


def _backend_from_environment() -> str:
    """``CROSSENT_BACKEND`` (any case), ``"auto"`` when unset; an unknown name raises."""
    value = os.environ.get("CROSSENT_BACKEND", "auto").strip().lower()
    if value not in BACKENDS:
        raise ValueError(
            f"Expected the environment variable CROSSENT_BACKEND to be one of "
            f"{', '.join(BACKENDS)}, but got {os.environ['CROSSENT_BACKEND']!r}"
        )
    return value


_state = {
    "validate_args": True,
    "warn_probabilities": True,
    "backend": _backend_from_environment(),
}
_triton: dict[str, bool | None] = {"available": None, "warned": False}  # found on first need


def set_backend(backend: str) -> None:
    """Choose where multiclass losses run: ``"auto"``, ``"triton"`` or ``"torch"``.

    Args:
        backend: ``"auto"`` (kernel for CUDA tensors when Triton is installed), ``"triton"``
            (the kernel wherever it can run, an error where it cannot) or ``"torch"`` (the
            PyTorch engine everywhere).

    Raises:
        ValueError: an unknown name.
    """
    if backend not in BACKENDS:  # the message of crossent.core.checks.check_choice
        allowed = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"Expected `backend` to be one of {allowed}, but got {backend!r}")
    _state["backend"] = backend


def get_backend() -> str:
    """The current backend name (see :func:`set_backend`)."""
    return _state["backend"]


def triton_available() -> bool:
    """Whether Triton imports (tried once, on first need: CPU-only use never imports it)."""
    if _triton["available"] is None:
        _triton["available"] = _triton_imports()
    return _triton["available"]


def _triton_imports() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # installed but broken (a mismatched build, a missing driver library)
        return False
    return True


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is switched on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class KernelUnavailableWarning(UserWarning):
    """The Triton backend was asked for, but Triton is missing: the engine runs instead."""


def warn_no_triton() -> None:
    """The one message of an explicit request without Triton (once per process)."""
    if _triton["warned"]:
        return
    _triton["warned"] = True
    warnings.warn(
        "crossent: the Triton backend was requested (crossent.kernels.set_backend('triton') or "
        "CROSSENT_BACKEND=triton) but Triton is not installed or does not import; the PyTorch "
        "engine computes the losses instead (same results, slower on GPU). Install it with "
        "`pip install 'crossent[gpu]'`, or set_backend('auto') to silence this.",
        KernelUnavailableWarning,
        stacklevel=3,
    )
