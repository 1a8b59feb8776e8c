"""The loss family's hyper-parameters, declared once (:mod:`crossent.core.params`).

Each public loss function names the constraints of its arguments here with
:func:`crossent.core.params.constrained`, and its module checks its constructor's arguments
against the same declarations, so both raise the same message (``Expected `q` in [0, 1],
but got 1.5``). Checks that involve several arguments or the input (smoothing with two
outcomes, ``alpha`` per class) are functions below.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.checks import fail
from crossent.core.params import NONE, Boolean, Custom, Integer, Options, Real
from crossent.core.targets import SMOOTHINGS

# The authors of the symmetric cross-entropy clamp the one-hot label at 1e-4 (Wang et al.).
DEFAULT_A = math.log(1e-4)
FLSD_53 = "flsd-53"


# The arguments every multiclass engine loss takes (PyTorch's meaning).
REDUCTION = Options(("none", "mean", "sum"))
SMOOTHING = Options(SMOOTHINGS)
LABEL_SMOOTHING = Real(0, 1)
IGNORE_INDEX = Integer()
Z_LOSS = Real(0)
FLAG = Boolean()
WEIGHT = Custom(
    lambda name, value: value if value is None else checks.check_tensor(name, value),
    rejects=("w", [1.0, 2.0]),
    expected="None or a tensor",
)
ENGINE = {
    "weight": WEIGHT,
    "ignore_index": IGNORE_INDEX,
    "reduction": REDUCTION,
    "label_smoothing": LABEL_SMOOTHING,
    "smoothing": SMOOTHING,
}
TERM = {**ENGINE, "inplace_backward": FLAG}  # ... and the losses built on one engine term

# The losses' own hyper-parameters.
GAMMA = Real(0) | Options((FLSD_53,))  # the softmax focal loss: a number or the schedule
FOCUSING = Real(0)  # gamma where no schedule is defined (sigmoid focal, NFL, APL, ASL)
Q = Real(0, 1)
TRUNCATE = Real(0, 1, open="both") | NONE
A = Real(None, 0, open="high")  # reverse CE's replacement for log 0, A < 0
COEFFICIENT = Real(0)  # loss coefficients (alpha, beta)
UNIT = Real(0, 1)  # mixing weights
EPSILON = Real(-1)  # poly-1: below -1 the loss is not monotone in p_t
TEMPERATURE = Real(0, open="low")
SIGMOID_ALPHA = Real(0, 1) | NONE  # the weight (1 - alpha, alpha) of two outcomes


# The overlap losses of segmentation.
OVERLAP = {
    "mode": Options(("multiclass", "binary", "multilabel")),
    "smooth": Real(0),
    "per_image": FLAG,
    "ignore_index": IGNORE_INDEX,
    "reduction": REDUCTION,
}
TVERSKY = {**OVERLAP, "alpha": COEFFICIENT, "beta": COEFFICIENT}
UNIFIED = {**OVERLAP, "weight": UNIT, "delta": UNIT, "gamma": UNIT, "asymmetric": FLAG}

LEGACY_FLAG = Boolean() | NONE  # PyTorch's deprecated size_average / reduce


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """``reduction`` from PyTorch's deprecated ``size_average`` and ``reduce``, as PyTorch.

    Either given (not ``None``) overrides ``reduction`` with PyTorch's meaning and warns as
    PyTorch does: ``reduce=False`` is ``"none"``, else ``size_average=False`` is ``"sum"``,
    else ``"mean"`` (``None`` counts as ``True``).
    """
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        legacy = "none"
    elif size_average is False:
        legacy = "sum"
    else:
        legacy = "mean"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{legacy}' "
        "instead.",
        UserWarning,
        stacklevel=3,
    )
    return legacy


def check_binary_smoothing(label_smoothing: object, smoothing: object) -> float:
    """``eps`` in [0, 1] and the convention; ``"others"`` with two outcomes needs ``eps <= 1/2``."""
    eps = checks.check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    checks.check_choice("smoothing", smoothing, ("uniform", "others"))
    if smoothing == "others" and eps > 0.5:
        raise fail("label_smoothing", "<= 1/2 with smoothing='others' and two outcomes", eps)
    return eps


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
            raise checks.ArgumentTypeError(
                "Expected `alpha` to be None or per-class values (a sequence, array or tensor), "
                f"but got {checks.described(alpha)}"
            ) from None
    if alpha.dim() != 1:
        raise fail("alpha", "to be one-dimensional (one value per class)", alpha)
    if not alpha.is_floating_point():
        alpha = alpha.to(torch.float64)
    if bool(((alpha < 0) | ~torch.isfinite(alpha)).any()):
        raise fail("alpha", "to be finite and >= 0", alpha)
    return alpha


CLASS_ALPHA = Custom(
    lambda name, value: check_class_alpha(value),
    rejects=(0.25, [-1.0, 1.0], "alpha"),
    expected="None or per-class values >= 0",
)


def check_alpha_classes(alpha: Tensor | None, input: object) -> Tensor | None:
    """Check per-class ``alpha`` has one value per class of ``input``; move it to its device."""
    if alpha is None or not isinstance(input, Tensor) or input.dim() == 0:
        return alpha  # a bad input is reported by the engine
    k = input.shape[0] if input.dim() == 1 else input.shape[1]
    if alpha.shape[0] != k:
        raise fail("alpha", f"to have length {k} (one value per class)", alpha)
    return alpha.to(input.device)
