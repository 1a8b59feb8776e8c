"""The one home for argument checks shared by every function, module and the registry.

Messages follow one pattern: ``Expected `gamma` >= 0, but got -1.0``. Checks that only look
at Python values always run; checks that read tensor contents (label range, rows summing to
one) run unless :func:`crossent.set_validation` turned them off.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from numbers import Real

import torch

from crossent.core import config


def _fmt(value: object) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return f"tensor({value.tolist()})"
        return f"tensor of shape {tuple(value.shape)}"
    return repr(value)


class ArgumentError(ValueError, RuntimeError):
    """A bad argument value: a ``ValueError``, and a ``RuntimeError`` as PyTorch raises one.

    PyTorch reports many bad arguments of its losses with ``RuntimeError`` (a class weight of
    the wrong length, a target of the wrong shape); code written against it catches that, so
    crossent's errors are both.
    """


class ArgumentTypeError(TypeError, ValueError):
    """A hyper-parameter of the wrong type (``gamma="x"``): a ``TypeError``, and a ValueError.

    It is a ``ValueError`` like the range errors of the same argument, so one ``except``
    catches both.
    """


def described(value: object) -> str:
    """``value`` for a type error: its (shortened) ``repr`` and its type, e.g. ``'w' (str)``."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def fail(name: str, expected: str, got: object) -> ArgumentError:
    """Build the standard error: ``Expected `name` <expected>, but got <got>``."""
    return ArgumentError(f"Expected `{name}` {expected}, but got {_fmt(got)}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise fail(name, f"to be one of {allowed}", value)


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a finite real in the given range.

    Args:
        name: argument name used in the message.
        value: the value to check.
        low: lower bound, or ``None``.
        high: upper bound, or ``None``.
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentTypeError(f"Expected `{name}` to be a real number, but got {_fmt(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise fail(name, "to be a finite number", value)
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise fail(name, f"in {left}{lo}, {hi}{right}", value)
    return v


def check_ignore_index(ignore_index: object) -> int:
    """An integer (any value; PyTorch's default is -100), returned as a Python int.

    Anything with ``__index__`` counts (a NumPy integer, a 0-dim integer tensor), as in
    PyTorch; a bool does not.
    """
    if isinstance(ignore_index, bool):
        raise ArgumentTypeError(f"Expected `ignore_index` to be an int, but got {ignore_index!r}")
    try:
        return operator.index(ignore_index)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(
            f"Expected `ignore_index` to be an int, but got {ignore_index!r}"
        ) from None


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Raise ``TypeError`` unless ``value`` is a tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor, but got {described(value)}")
    return value


def check_floating(name: str, value: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``value`` has a floating dtype."""
    if not value.is_floating_point():
        raise TypeError(f"Expected `{name}` to have a floating dtype, but got {value.dtype}")


def check_reduction(reduction: object) -> str:
    """Check ``reduction`` is one of PyTorch's three names."""
    check_choice("reduction", reduction, ("none", "mean", "sum"))
    return str(reduction)


def check_class_weight(
    weight: torch.Tensor | None, num_classes: int, name: str = "weight"
) -> torch.Tensor | None:
    """Check a per-class weight vector: shape ``(K,)``, floating, finite, non-negative.

    PyTorch accepts negative class weights; crossent rejects them (a negative weight turns a
    loss into a gain and its weighted mean is no longer an average). Documented deviation.
    """
    if weight is None:
        return None
    check_tensor(name, weight)
    if weight.dim() != 1 or weight.shape[0] != num_classes:
        raise fail(name, f"to have shape ({num_classes},) (one weight per class)", weight)
    check_floating(name, weight)
    if config.validate_args() and bool(((weight < 0) | ~torch.isfinite(weight)).any()):
        raise fail(name, "to be finite and >= 0 (negative class weights are not supported)", weight)
    return weight


def check_unit_interval(name: str, value: torch.Tensor, expected: str = "") -> None:
    """Raise unless every entry of ``value`` lies in [0, 1] (NaN does not).

    ``expected`` replaces the message's ``to hold values in [0, 1]``.
    """
    if value.numel() == 0:
        return
    low, high = torch.aminmax(value.detach())
    if not (bool(low >= 0) and bool(high <= 1)):  # NaN fails both comparisons
        raise fail(name, expected or "to hold values in [0, 1] (not NaN)", value)


def check_devices(input: torch.Tensor, input_name: str = "input", **others: object) -> None:
    """Raise unless each tensor of ``others`` is on ``input``'s device (named as given).

    Checked before any value is read: a tensor on another device would otherwise fail deep
    inside (a copy out of a meta tensor, a CUDA/CPU mix) without naming the argument.
    """
    for name, value in others.items():
        if isinstance(value, torch.Tensor) and value.device != input.device:
            raise ArgumentError(
                f"Expected `{name}` on the device of `{input_name}` ({input.device}), but got a "
                f"tensor on {value.device}"
            )
