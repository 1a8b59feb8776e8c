r"""Focal loss: softmax (multiclass) and sigmoid (binary / multi-label, RetinaNet) forms."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from crossent.core.params import constrained
from crossent.engine import term_loss
from crossent.engine.binary import binary_term_loss
from crossent.functional import _params
from crossent.terms import FLSD53FocalTerm, FocalTerm


def focal_term(gamma: float | str) -> FocalTerm:
    """The focal term for a validated ``gamma`` (a number, or ``"flsd-53"``)."""
    return FLSD53FocalTerm() if gamma == _params.FLSD_53 else FocalTerm(float(gamma))


@constrained(**_params.TERM, gamma=_params.GAMMA, alpha=_params.CLASS_ALPHA)
def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float | str = 2.0,
    alpha: Sequence[float] | Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Softmax focal loss from logits: cross-entropy down-weighted on easy examples.

    Per element, with ``p = softmax(z)`` and the target class ``t``:

    .. math::

        \ell = -\alpha_t\, w_t (1 - p_t)^{\gamma} \log p_t .

    With label smoothing or probability targets ``P`` it is the per-class sum
    ``-sum_k alpha_k w_k P_k (1 - p_k)^gamma log p_k`` (docs/design.md, "One engine").

    * ``gamma = 0`` is cross-entropy; with ``weight=w`` it equals
      ``cross_entropy(weight=w)``.
    * ``gamma="flsd-53"``: the sample-dependent schedule of Mukhoti et al. (2020), ``gamma = 5``
      where ``p < 0.2`` and ``3`` otherwise, applied per class element from its own
      probability (for a one-hot target: from ``p_t``).
    * ``alpha`` (per-class, as in Lin et al., torchvision and Keras) multiplies each element's
      loss and the ``mean`` stays the plain mean over elements; ``weight`` has PyTorch's
      meaning (the ``mean`` divides by the sum of the target weights). A single float
      ``alpha`` raises: it is the sigmoid form's convention (:func:`sigmoid_focal_loss`).

    Reductions: ``mean`` (as :func:`crossent.cross_entropy`), ``sum``, ``none``.

    Term (:class:`crossent.terms.FocalTerm`): ``F(s, P) = -P (1 - e^s)^g s``,
    ``G(s, P) = -P (1 - q)^g [1 - g q r(s)]``, ``r(s) = s / (1 - q)``, ``r(0) = -1`` — finite
    for ``gamma < 1`` on saturated rows, where the textbook gradient
    ``g q (1-q)^(g-1) s`` is ``0 * inf``. For one-hot targets only the target column is
    evaluated (the engine's fast path).

    Worked numbers (``gamma = 2``): at ``p_t = 0.9 / 0.5 / 0.1`` the cross-entropy is
    ``0.105 / 0.693 / 2.303`` and the focal loss ``0.00105 / 0.173 / 1.865``.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)``, or probabilities
            shaped like ``input``.
        gamma: focusing parameter ``>= 0``, or ``"flsd-53"``. Default 2.
        alpha: ``None`` or per-class factors (sequence or tensor of length ``C``, ``>= 0``).
            Default None.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"`` (see :func:`crossent.cross_entropy`).
            Default ``"uniform"``.
        inplace_backward: write the gradient into ``input``'s storage during the forward pass
            (saves one logits-sized buffer). The logits are unusable afterwards; their version
            counter is bumped so an operation that saved them fails loudly. Applies to logits
            made by an operation; a leaf keeps its values and gets a new ``.grad``. Default
            False.

    Shape:
        - input: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - target: ``()``, ``(N)`` or ``(N, d1, ..., dn)`` indices, or the shape of ``input``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import focal_loss
        >>> logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> round(focal_loss(logits, torch.tensor([0]), gamma=2.0).item(), 4)
        0.1733

    References:
        Lin et al., `Focal Loss for Dense Object Detection
        <https://arxiv.org/abs/1708.02002>`_, 2017;
        Mukhoti et al., `Calibrating Deep Neural Networks using Focal Loss
        <https://arxiv.org/abs/2002.09437>`_, 2020 (FLSD-53).
    """
    scale = _params.check_alpha_classes(alpha, input)
    return term_loss(
        input,
        target,
        focal_term(gamma),
        weight=weight,
        class_scale=scale,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(gamma=_params.FOCUSING, alpha=_params.SIGMOID_ALPHA, reduction=_params.REDUCTION)
def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    reduction: str = "mean",
) -> Tensor:
    r"""Sigmoid focal loss (RetinaNet) from logits, for binary and multi-label targets.

    Per element, with ``p = sigmoid(z)`` and a 0/1 target ``y``:

    .. math::

        \ell = -\alpha_y (1 - p_y)^{\gamma} \log p_y, \qquad
        p_1 = p,\ p_0 = 1 - p,\ \alpha_1 = \alpha,\ \alpha_0 = 1 - \alpha .

    Equal to torchvision's ``sigmoid_focal_loss`` for 0/1 targets and the same
    ``reduction`` — note torchvision's default is ``"none"``, ours ``"mean"`` (the plain mean
    over all elements). ``alpha=None`` disables the balancing (torchvision: ``alpha < 0``).

    Soft targets ``y`` in [0, 1] give the per-class sum of docs/design.md ("One engine"),
    ``-alpha y (1-p)^g log p - (1-alpha)(1-y) p^g log(1-p)``; torchvision instead mixes
    ``p_t = p y + (1-p)(1-y)`` inside the modulating factor, so the two differ for soft
    targets (and agree for 0/1).

    Gradient (Lin et al., appendix): for ``y = 1`` and ``alpha=None``,
    ``d l / d z = (1 - p)^g (g p log p + p - 1)``. It is computed analytically by the binary
    engine with the focal term, finite at any logit.

    Args:
        input: logits, any shape.
        target: targets in [0, 1], the shape of ``input``.
        gamma: focusing parameter ``>= 0``. Default 2.
        alpha: weight of the positive class in [0, 1] (``1 - alpha`` for the negative), or
            ``None``. Default 0.25.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.

    Shape:
        - input: ``(*)``; target: ``(*)``; output: scalar, or ``(*)`` with ``"none"``.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import sigmoid_focal_loss
        >>> loss = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), alpha=None)
        >>> round(loss.item(), 4)
        0.1733

    References:
        Lin et al., `Focal Loss for Dense Object Detection
        <https://arxiv.org/abs/1708.02002>`_, 2017; torchvision
        ``torchvision.ops.sigmoid_focal_loss``.
    """
    return binary_term_loss(
        input,
        target,
        FocalTerm(gamma),
        balance=None if alpha is None else (1.0 - alpha, alpha),
        reduction=reduction,
    )
