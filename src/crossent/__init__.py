"""crossent: the cross-entropy family of classification losses, exact and fast.

Losses take logits; :mod:`crossent.nn` mirrors every function as a module; calibration lives
in :mod:`crossent.calibration`, studies in :mod:`crossent.study`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from crossent import nn
from crossent._targets import ProbabilityInputWarning
from crossent.config import set_probability_warning, set_validation
from crossent.functional import (
    binary_cross_entropy_with_logits,
    chance_loss,
    cross_entropy,
    min_achievable_loss,
)

__all__ = [
    "ProbabilityInputWarning",
    "__version__",
    "binary_cross_entropy_with_logits",
    "chance_loss",
    "cross_entropy",
    "min_achievable_loss",
    "nn",
    "set_probability_warning",
    "set_validation",
]
