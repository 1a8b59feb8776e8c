"""Checks of the loss family's hyper-parameters, shared by functions and modules.

Each returns the validated value and raises ``ValueError`` (``TypeError`` for a wrong type)
stating the allowed range, via :mod:`crossent.core.checks`, so a module raises at construction
with the same message as the function.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.checks import fail

# The authors of the symmetric cross-entropy clamp the one-hot label at 1e-4 (Wang et al.).
DEFAULT_A = math.log(1e-4)
FLSD_53 = "flsd-53"


def check_gamma(gamma: object, *, allow_schedule: bool = True) -> float | str:
    """``gamma >= 0``, or the string ``"flsd-53"`` where a schedule is allowed."""
    if isinstance(gamma, str):
        if not allow_schedule:
            raise fail("gamma", "to be a real number >= 0", gamma)
        checks.check_choice("gamma", gamma, (FLSD_53,))
        return gamma
    return checks.check_real("gamma", gamma, low=0.0)


def check_q(q: object) -> float:
    """``q`` in [0, 1]."""
    return checks.check_real("q", q, low=0.0, high=1.0)


def check_truncate(truncate: object) -> float | None:
    """``None`` or ``k`` in (0, 1)."""
    if truncate is None:
        return None
    return checks.check_real(
        "truncate", truncate, low=0.0, high=1.0, low_open=True, high_open=True
    )


def check_A(A: object) -> float:
    """``A < 0`` (it replaces ``log 0``)."""
    return checks.check_real("A", A, high=0.0, high_open=True)


def check_nonnegative(name: str, value: object) -> float:
    """``value >= 0`` (loss coefficients such as ``alpha``, ``beta``)."""
    return checks.check_real(name, value, low=0.0)


def check_unit(name: str, value: object) -> float:
    """``value`` in [0, 1] (mixing weights)."""
    return checks.check_real(name, value, low=0.0, high=1.0)


def check_epsilon(epsilon: object) -> float:
    """Poly-1's ``epsilon >= -1`` (below it the loss is not monotone in ``p_t``)."""
    return checks.check_real("epsilon", epsilon, low=-1.0)


def check_temperature(temperature: object) -> float:
    """``temperature > 0``."""
    return checks.check_real("temperature", temperature, low=0.0, low_open=True)


def check_binary_smoothing(label_smoothing: object, smoothing: object) -> float:
    """``eps`` in [0, 1] and the convention; ``"others"`` with two outcomes needs ``eps <= 1/2``."""
    eps = checks.check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    checks.check_choice("smoothing", smoothing, ("uniform", "others"))
    if smoothing == "others" and eps > 0.5:
        raise fail("label_smoothing", "<= 1/2 with smoothing='others' and two outcomes", eps)
    return eps


def check_sigmoid_alpha(alpha: object) -> float | None:
    """``None`` (no balancing) or ``alpha`` in [0, 1], the weight ``(1 - alpha, alpha)``."""
    if alpha is None:
        return None
    return checks.check_real("alpha", alpha, low=0.0, high=1.0)


def check_class_alpha(alpha: object) -> Tensor | None:
    """``None`` or per-class values (a sequence or 1-D tensor), finite and ``>= 0``.

    A single number raises: the float ``alpha`` of the sigmoid form means ``(1 - alpha,
    alpha)`` for two outcomes, which has no multiclass meaning.
    """
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        raise fail(
            "alpha",
            "to be None or per-class values (a sequence or tensor of length K); a single "
            "float is the sigmoid form's convention (1 - alpha, alpha): pass per-class values, "
            "e.g. alpha=[0.25, 0.75]",
            alpha,
        )
    if not isinstance(alpha, Tensor):
        try:  # a sequence or an array of numbers
            if isinstance(alpha, (str, bytes, dict)):
                raise TypeError
            # float64: the loss casts it to its compute dtype (float32 would round it first)
            alpha = torch.as_tensor(alpha, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                "Expected `alpha` to be None or per-class values (a sequence, array or tensor), "
                f"but got {type(alpha).__name__}"
            ) from None
    if alpha.dim() != 1:
        raise fail("alpha", "to be one-dimensional (one value per class)", alpha)
    if not alpha.is_floating_point():
        alpha = alpha.to(torch.float64)
    if bool(((alpha < 0) | ~torch.isfinite(alpha)).any()):
        raise fail("alpha", "to be finite and >= 0", alpha)
    return alpha


def check_alpha_classes(alpha: Tensor | None, input: object) -> Tensor | None:
    """Check per-class ``alpha`` has one value per class of ``input``; move it to its device."""
    if alpha is None or not isinstance(input, Tensor) or input.dim() == 0:
        return alpha  # a bad input is reported by the engine
    k = input.shape[0] if input.dim() == 1 else input.shape[1]
    if alpha.shape[0] != k:
        raise fail("alpha", f"to have length {k} (one value per class)", alpha)
    return alpha.to(input.device)
