"""The term engine: any per-class loss and its analytic gradient, from logits.

:mod:`~crossent.engine.multiclass` (softmax losses, :func:`term_loss`),
:mod:`~crossent.engine.chunks` (the work inside one chunk of rows) and
:mod:`~crossent.engine.binary` (sigmoid / multi-label losses, :func:`binary_term_loss`).
CUDA logits are handed to the Triton kernels of :mod:`crossent.kernels`.
"""

from __future__ import annotations

from crossent.engine.binary import binary_term_loss
from crossent.engine.multiclass import differentiable_loss, run, shifted_log_softmax, term_loss

__all__ = ["binary_term_loss", "differentiable_loss", "run", "shifted_log_softmax", "term_loss"]
