"""``torch.nn.Module`` mirror of :mod:`crossent.functional`: one class per loss."""

from __future__ import annotations

from crossent.nn._base import TermModule
from crossent.nn.asymmetric import AsymmetricLoss
from crossent.nn.cross_entropy import BCEWithLogitsLoss, CrossEntropyLoss
from crossent.nn.distillation import DistillationLoss
from crossent.nn.focal import FocalLoss, SigmoidFocalLoss
from crossent.nn.gce import BinaryGCELoss, BinarySGCELoss, GCELoss, SGCELoss
from crossent.nn.nll import NLLLoss
from crossent.nn.overlap import DiceLoss, FocalTverskyLoss, TverskyLoss, UnifiedFocalLoss
from crossent.nn.regularized import (
    BrierLoss,
    EntropyRegularizedCrossEntropyLoss,
    Poly1CrossEntropyLoss,
)
from crossent.nn.robust import (
    APLoss,
    MAELoss,
    NCELoss,
    NFLoss,
    RCELoss,
    SCELoss,
    UnhingedLoss,
)

__all__ = [
    "APLoss",
    "AsymmetricLoss",
    "BCEWithLogitsLoss",
    "BinaryGCELoss",
    "BinarySGCELoss",
    "BrierLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "DistillationLoss",
    "EntropyRegularizedCrossEntropyLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "GCELoss",
    "MAELoss",
    "NCELoss",
    "NFLoss",
    "NLLLoss",
    "Poly1CrossEntropyLoss",
    "RCELoss",
    "SCELoss",
    "SGCELoss",
    "SigmoidFocalLoss",
    "TermModule",
    "TverskyLoss",
    "UnhingedLoss",
    "UnifiedFocalLoss",
]
