r"""The asymmetric loss (ASL) for multi-label classification (Ridnik et al. 2021)."""

from __future__ import annotations

from torch import Tensor

from crossent.core.params import Real, constrained
from crossent.engine.binary import binary_term_loss
from crossent.functional import _params
from crossent.terms import FocalTerm, ShiftedFocalTerm

# ASL's probability margin: in [0, 1) (at 1 every negative would be discarded).
CLIP = Real(0, 1, open="high")


def asymmetric_terms(
    gamma_pos: float, gamma_neg: float, clip: float
) -> tuple[FocalTerm, ShiftedFocalTerm]:
    """The positive and negative terms of :func:`asymmetric_loss` (checked values)."""
    return FocalTerm(gamma_pos), ShiftedFocalTerm(gamma_neg, clip)


@constrained(
    gamma_pos=_params.FOCUSING,
    gamma_neg=_params.FOCUSING,
    clip=CLIP,
    weight=_params.WEIGHT,
    reduction=_params.REDUCTION,
)
def asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Asymmetric loss (ASL) from logits, for multi-label targets.

    Per element, with ``p = sigmoid(z)``, a target ``y`` in [0, 1] and the shifted probability
    ``p_m = max(p - clip, 0)`` of a negative:

    .. math::

        \ell = -w \left[\, y\,(1 - p)^{\gamma_+} \log p
            \;+\; (1 - y)\, p_m^{\gamma_-} \log(1 - p_m) \right].

    Positives get a (mild) focal term, negatives a strong one of the shifted probability: a
    negative with ``p <= clip`` contributes nothing ("probability shifting" discards easy
    negatives and the gradient of mislabeled ones is bounded). ``gamma_neg = gamma_pos`` and
    ``clip = 0`` is the sigmoid focal loss without ``alpha``; all three 0 is binary
    cross-entropy. Soft targets weight both parts.

    Computed from the logits by the binary engine with a positive term
    (:class:`crossent.terms.FocalTerm`, ``gamma_pos``) and a negative term
    (:class:`crossent.terms.ShiftedFocalTerm`, ``gamma_neg`` and ``clip``), with the analytic
    gradient; ``log p = logsigmoid(z)`` and ``log(1 - p) = logsigmoid(-z)`` are never formed
    from ``p``. The authors' code optionally detaches the focusing weights from the graph
    (``disable_torch_grad_focal_loss``), which changes the gradient; here the gradient is the
    derivative of the loss above.

    Args:
        input: logits, any shape (``(N, C)`` for ``C`` labels).
        target: targets in [0, 1] of the shape of ``input`` (0/1 labels or soft targets).
        gamma_pos: focusing parameter of the positives, ``>= 0``. Default 0 (the paper's).
        gamma_neg: focusing parameter of the negatives, ``>= 0``. Default 4 (the paper's).
        clip: probability margin ``m`` of the negatives, in [0, 1). Default 0.05 (the paper's).
        weight: per-element rescaling, broadcastable to ``input`` (e.g. ``(C,)``), or None.
        reduction: ``"none" | "mean" | "sum"``; ``mean`` is the plain mean over elements, as
            binary cross-entropy. Default ``"mean"``.

    Shape:
        - input: ``(*)``; target: ``(*)``; output: scalar, or ``(*)`` with ``"none"``.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import asymmetric_loss
        >>> z, y = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
        >>> round(asymmetric_loss(z, y, reduction="sum").item(), 5)
        0.21875

    References:
        Ridnik et al., `Asymmetric Loss For Multi-Label Classification
        <https://arxiv.org/abs/2009.14119>`_, ICCV 2021.
    """
    positive, negative = asymmetric_terms(gamma_pos, gamma_neg, clip)
    return binary_term_loss(
        input, target, positive, negative_term=negative, weight=weight, reduction=reduction
    )
