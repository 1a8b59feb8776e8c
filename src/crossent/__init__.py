"""crossent: the cross-entropy family of classification losses, exact and fast.

Losses take logits; :mod:`crossent.nn` mirrors every function as a module; calibration lives
in :mod:`crossent.calibration`, data sets and label noise in :mod:`crossent.data`, studies in
:mod:`crossent.study`, fast back ends in :mod:`crossent.kernels`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from crossent import functional, nn, overlap
from crossent.core import config
from crossent.core.config import set_probability_warning, set_validation
from crossent.core.targets import ProbabilityInputWarning

# Every loss function, listed once (in crossent.functional.__all__).
from crossent.functional import *  # noqa: F403
from crossent.linear import linear_cross_entropy, linear_loss
from crossent.registry import available_losses, get_loss
from crossent.weights import class_counts, class_weights

__all__ = [
    *functional.__all__,
    "ProbabilityInputWarning",
    "__version__",
    "available_losses",
    "class_counts",
    "class_weights",
    "config",
    "functional",
    "get_loss",
    "linear_cross_entropy",
    "linear_loss",
    "nn",
    "overlap",
    "set_probability_warning",
    "set_validation",
]
