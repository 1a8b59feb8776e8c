"""The overlap losses under their earlier import path (they live in :mod:`crossent.functional`).

``from crossent.overlap import dice_loss`` keeps working; new code imports them from
:mod:`crossent` or :mod:`crossent.functional`.
"""

from __future__ import annotations

from crossent.functional.overlap import (
    dice_loss,
    focal_tversky_loss,
    tversky_loss,
    unified_focal_loss,
)

__all__ = ["dice_loss", "focal_tversky_loss", "tversky_loss", "unified_focal_loss"]
