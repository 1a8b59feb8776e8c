"""The library's explicit, documented switches (its only global state).

* ``validate_args`` — checks that read tensor contents (class-index range, target values,
  class weights). On by default; turn off in hot loops once inputs are known good. (NaN
  logits are not looked for: they give NaN, as in PyTorch.)
* ``warn_probabilities`` — the double-softmax diagnostic: a warning when logits look like
  probabilities. On by default; it never changes a result.

Both read tensor values on the host, so neither runs while ``torch.compile`` traces a loss
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

import torch

_state = {"validate_args": True, "warn_probabilities": True}


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ...) is running.

    Its tensors cannot be read on the host under ``vmap``, and an ``autograd.Function``
    without ``setup_context`` is refused: the losses then take their differentiable formula
    and the content checks step aside, as while compiling.
    """
    return torch._C._are_functorch_transforms_active()


def _tracing() -> bool:
    """Whether tensor contents cannot be read on the host (compiling or a transform)."""
    return torch.compiler.is_compiling() or transforms_active()


def validate_args() -> bool:
    """Whether checks that read tensor contents run (never while ``torch.compile`` traces).

    Those checks need the values on the host (a synchronisation, a graph break); a compiled
    loss relies on :func:`device_assertions` instead.
    """
    return _state["validate_args"] and not _tracing()


def device_assertions() -> bool:
    """Whether a compiled loss checks class indices with device-side asserts (no host sync).

    On while ``torch.compile`` traces with validation on: an index out of range then fails
    with a ``RuntimeError`` at run time instead of the eager ``ValueError``.
    """
    return _state["validate_args"] and torch.compiler.is_compiling()


def warn_probabilities() -> bool:
    """Whether the double-softmax warning is on (never while ``torch.compile`` traces)."""
    return _state["warn_probabilities"] and not _tracing()


def set_validation(enabled: bool) -> None:
    """Turn the content checks (label range, target values, class weights) on or off."""
    _state["validate_args"] = bool(enabled)


def set_probability_warning(enabled: bool) -> None:
    """Turn the double-softmax warning (logits that look like probabilities) on or off."""
    _state["warn_probabilities"] = bool(enabled)
