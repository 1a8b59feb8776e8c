"""The library's explicit, documented switches (its only global state).

* ``validate_args`` — checks that read tensor contents (class-index range, target values,
  class weights). On by default; turn off in hot loops once inputs are known good. (NaN
  logits are not looked for: they give NaN, as in PyTorch.)
* ``warn_probabilities`` — the double-softmax diagnostic: a warning when logits look like
  probabilities. On by default; it never changes a result.

Example:
    >>> import crossent
    >>> crossent.set_validation(False)
    >>> crossent.config.validate_args()
    False
    >>> crossent.set_validation(True)
"""

from __future__ import annotations

_state = {"validate_args": True, "warn_probabilities": True}


def validate_args() -> bool:
    """Whether checks that read tensor contents are on."""
    return _state["validate_args"]


def warn_probabilities() -> bool:
    """Whether the double-softmax warning is on."""
    return _state["warn_probabilities"]


def set_validation(enabled: bool) -> None:
    """Turn the content checks (label range, target values, class weights) on or off."""
    _state["validate_args"] = bool(enabled)


def set_probability_warning(enabled: bool) -> None:
    """Turn the double-softmax warning (logits that look like probabilities) on or off."""
    _state["warn_probabilities"] = bool(enabled)
