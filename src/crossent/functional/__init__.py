"""The functional API: one function per loss, tensors positional, settings keyword.

Every loss of crossent is here (the overlap losses of segmentation too); :mod:`crossent`
re-exports them all.
"""

from __future__ import annotations

from crossent.functional.asymmetric import asymmetric_loss
from crossent.functional.cross_entropy import (
    binary_cross_entropy_with_logits,
    chance_loss,
    cross_entropy,
    min_achievable_loss,
)
from crossent.functional.distillation import distillation_loss
from crossent.functional.focal import focal_loss, sigmoid_focal_loss
from crossent.functional.gce import (
    binary_generalized_cross_entropy,
    binary_smooth_generalized_cross_entropy,
    generalized_cross_entropy,
    smooth_generalized_cross_entropy,
)
from crossent.functional.nll import nll_loss
from crossent.functional.overlap import (
    dice_loss,
    focal_tversky_loss,
    tversky_loss,
    unified_focal_loss,
)
from crossent.functional.regularized import (
    brier_loss,
    entropy_regularized_cross_entropy,
    poly1_cross_entropy,
)
from crossent.functional.robust import (
    active_passive_loss,
    mae_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    reverse_cross_entropy,
    symmetric_cross_entropy,
    unhinged_loss,
)

__all__ = [
    "active_passive_loss",
    "asymmetric_loss",
    "binary_cross_entropy_with_logits",
    "binary_generalized_cross_entropy",
    "binary_smooth_generalized_cross_entropy",
    "brier_loss",
    "chance_loss",
    "cross_entropy",
    "dice_loss",
    "distillation_loss",
    "entropy_regularized_cross_entropy",
    "focal_loss",
    "focal_tversky_loss",
    "generalized_cross_entropy",
    "mae_loss",
    "min_achievable_loss",
    "nll_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "poly1_cross_entropy",
    "reverse_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_generalized_cross_entropy",
    "symmetric_cross_entropy",
    "tversky_loss",
    "unhinged_loss",
    "unified_focal_loss",
]
