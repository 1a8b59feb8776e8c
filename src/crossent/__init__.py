"""crossent: the cross-entropy family of classification losses, exact and fast.

Losses take logits; :mod:`crossent.nn` mirrors every function as a module; calibration lives
in :mod:`crossent.calibration`, studies in :mod:`crossent.study`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from crossent.config import set_probability_warning, set_validation

__all__ = [
    "__version__",
    "set_probability_warning",
    "set_validation",
]
