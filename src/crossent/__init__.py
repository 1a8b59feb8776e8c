"""crossent: the cross-entropy family of classification losses, exact and fast.

Losses take logits; :mod:`crossent.nn` mirrors every function as a module; calibration lives
in :mod:`crossent.calibration`, data sets and label noise in :mod:`crossent.data`, studies in
:mod:`crossent.study`, fast back ends in :mod:`crossent.kernels`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from crossent import nn, overlap
from crossent.core import config
from crossent.core.config import set_probability_warning, set_validation
from crossent.core.targets import ProbabilityInputWarning
from crossent.functional import (
    active_passive_loss,
    binary_cross_entropy_with_logits,
    binary_generalized_cross_entropy,
    binary_smooth_generalized_cross_entropy,
    brier_loss,
    chance_loss,
    cross_entropy,
    distillation_loss,
    entropy_regularized_cross_entropy,
    focal_loss,
    generalized_cross_entropy,
    mae_loss,
    min_achievable_loss,
    nll_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    poly1_cross_entropy,
    reverse_cross_entropy,
    sigmoid_focal_loss,
    smooth_generalized_cross_entropy,
    symmetric_cross_entropy,
    unhinged_loss,
)
from crossent.functional.overlap import (
    dice_loss,
    focal_tversky_loss,
    tversky_loss,
    unified_focal_loss,
)
from crossent.linear import linear_cross_entropy, linear_loss
from crossent.registry import available_losses, get_loss
from crossent.weights import class_counts, class_weights

__all__ = [
    "ProbabilityInputWarning",
    "__version__",
    "active_passive_loss",
    "available_losses",
    "binary_cross_entropy_with_logits",
    "binary_generalized_cross_entropy",
    "binary_smooth_generalized_cross_entropy",
    "brier_loss",
    "chance_loss",
    "class_counts",
    "class_weights",
    "config",
    "cross_entropy",
    "dice_loss",
    "distillation_loss",
    "entropy_regularized_cross_entropy",
    "focal_loss",
    "focal_tversky_loss",
    "generalized_cross_entropy",
    "get_loss",
    "linear_cross_entropy",
    "linear_loss",
    "mae_loss",
    "min_achievable_loss",
    "nll_loss",
    "nn",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "overlap",
    "poly1_cross_entropy",
    "reverse_cross_entropy",
    "set_probability_warning",
    "set_validation",
    "sigmoid_focal_loss",
    "smooth_generalized_cross_entropy",
    "symmetric_cross_entropy",
    "tversky_loss",
    "unhinged_loss",
    "unified_focal_loss",
]
