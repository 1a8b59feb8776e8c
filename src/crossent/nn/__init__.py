"""``torch.nn.Module`` mirror of :mod:`crossent.functional`: one class per loss."""

from __future__ import annotations

from crossent.nn.cross_entropy import BCEWithLogitsLoss, CrossEntropyLoss

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss"]
