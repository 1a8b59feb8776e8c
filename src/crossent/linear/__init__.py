"""Fused linear layer + loss: any registry loss of ``X @ W.T + b`` without the full logits.

:mod:`~crossent.linear.api` (the public functions), :mod:`~crossent.linear.args` (their
argument checks), :mod:`~crossent.linear.fused` (the chunk loop of the engine-term losses),
:mod:`~crossent.linear.generic` (every other loss, through autograd per chunk),
:mod:`~crossent.linear.buffers` (the gradient buffers) and :mod:`~crossent.linear.autograd`
(the autograd function and dispatch).
"""

from __future__ import annotations

from crossent.linear.api import linear_cross_entropy, linear_loss, linear_term_loss, term_losses

__all__ = ["linear_cross_entropy", "linear_loss", "linear_term_loss", "term_losses"]
