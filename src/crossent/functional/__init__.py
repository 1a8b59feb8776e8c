"""The functional API: one function per loss, tensors positional, settings keyword."""

from __future__ import annotations

from crossent.functional.cross_entropy import (
    binary_cross_entropy_with_logits,
    chance_loss,
    cross_entropy,
    min_achievable_loss,
)

__all__ = [
    "binary_cross_entropy_with_logits",
    "chance_loss",
    "cross_entropy",
    "min_achievable_loss",
]
