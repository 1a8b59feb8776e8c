"""The per-class terms ``F(s, P)`` and ``G = dF/ds`` of every engine loss, by family.

The contract a term follows (and the base class :class:`Term`) is :mod:`crossent.core.term`.
"""

from __future__ import annotations

from crossent.core.term import KernelCode, Term, value_where_target
from crossent.terms.asymmetric import ShiftedFocalTerm
from crossent.terms.combined import WeightedSumTerm
from crossent.terms.cross_entropy import CrossEntropyTerm, FLSD53FocalTerm, FocalTerm
from crossent.terms.distillation import ForwardKLTerm, JensenShannonTerm, ReverseKLTerm
from crossent.terms.regularized import BrierTerm, ConfidencePenaltyTerm, Poly1Term
from crossent.terms.robust import LqTerm, MAETerm, ReverseCrossEntropyTerm, UnhingedTerm

__all__ = [
    "BrierTerm",
    "ConfidencePenaltyTerm",
    "CrossEntropyTerm",
    "FLSD53FocalTerm",
    "FocalTerm",
    "ForwardKLTerm",
    "JensenShannonTerm",
    "KernelCode",
    "LqTerm",
    "MAETerm",
    "Poly1Term",
    "ReverseCrossEntropyTerm",
    "ReverseKLTerm",
    "ShiftedFocalTerm",
    "Term",
    "UnhingedTerm",
    "WeightedSumTerm",
    "value_where_target",
]
