r"""Cross-entropy with a regularizer (Poly-1, confidence penalty) and the Brier score loss."""

from __future__ import annotations

from torch import Tensor

from crossent.core.params import constrained
from crossent.engine import term_loss
from crossent.functional import _params
from crossent.terms import BrierTerm, ConfidencePenaltyTerm, Poly1Term


@constrained(**_params.TERM, epsilon=_params.EPSILON)
def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Poly-1 cross-entropy (Leng et al. 2022): CE plus ``epsilon (1 - p_t)``.

    .. math::

        \ell = -\log p_t + \epsilon (1 - p_t), \qquad
        \text{smoothed: } \sum_k w_k P_k \left(-\log p_k + \epsilon (1 - p_k)\right),

    the first polynomial coefficient of cross-entropy's expansion in ``(1 - p_t)`` moved by
    ``epsilon``; for a smoothed target it equals the paper's ``CE(P) + eps (1 - <P, p>)``.
    ``epsilon = 0`` is cross-entropy. The paper's default is ``epsilon = 1``; optax's
    ``poly_loss_cross_entropy`` defaults to ``2.0``. ``epsilon >= -1`` keeps the loss
    decreasing in ``p_t``.

    Term (:class:`crossent.terms.Poly1Term`): ``F = P(-s + eps(1 - e^s))``,
    ``G = P(-1 - eps e^s)``; one-hot targets take the engine's fast path.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        epsilon: coefficient ``>= -1``. Default 1.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.
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
        The loss.

    Example:
        >>> import torch
        >>> from crossent import poly1_cross_entropy
        >>> logits = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(poly1_cross_entropy(logits, torch.tensor([0])).item(), 4)
        1.1931

    References:
        Leng et al., `PolyLoss: A Polynomial Expansion Perspective of Classification Loss
        Functions <https://arxiv.org/abs/2204.12511>`_, 2022.
    """
    return term_loss(
        input,
        target,
        Poly1Term(epsilon),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(**_params.TERM, beta=_params.COEFFICIENT)
def entropy_regularized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 0.1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Cross-entropy with the confidence penalty (Pereyra et al. 2017): ``CE - beta H(p)``.

    .. math::

        \ell = -\sum_k w_k P_k \log p_k - \beta H(p), \qquad H(p) = -\sum_k p_k \log p_k

    (with class weights the entropy's terms are weighted too). Penalizing low-entropy
    predictions discourages over-confidence, like label smoothing. For ``gamma >= 1`` the
    focal loss is bounded below by ``CE - gamma H(p)`` (Mukhoti et al. 2020), i.e. by this
    loss at ``beta = gamma``.

    Term (:class:`crossent.terms.ConfidencePenaltyTerm`): ``F = -P s + beta e^s s``,
    ``G = -P + beta e^s (s + 1)``; it acts on every class.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        beta: strength of the penalty, ``>= 0``. Default 0.1.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.
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
        The loss.

    Example:
        >>> import torch
        >>> from crossent import entropy_regularized_cross_entropy
        >>> logits = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(entropy_regularized_cross_entropy(logits, torch.tensor([0])).item(), 4)
        0.6238

    References:
        Pereyra et al., `Regularizing Neural Networks by Penalizing Confident Output
        Distributions <https://arxiv.org/abs/1701.06548>`_, 2017.
    """
    return term_loss(
        input,
        target,
        ConfidencePenaltyTerm(beta),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(**_params.TERM)
def brier_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""The Brier score as a training loss: squared error between softmax and target.

    .. math::

        \ell = \sum_k w_k (p_k - P_k)^2

    summed over classes (Brier's original score; some libraries divide by ``K``), a proper
    scoring rule, bounded by 2. Takes logits; the calibration metric of the same name takes
    probabilities.

    Term (:class:`crossent.terms.BrierTerm`): ``F = (e^s - P)^2``, ``G = 2 (e^s - P) e^s``;
    it acts on every class.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.
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
        The loss.

    Example:
        >>> import torch
        >>> from crossent import brier_loss
        >>> brier_loss(torch.log(torch.tensor([[0.75, 0.25]])), torch.tensor([0]))
        tensor(0.1250)

    References:
        Brier, `Verification of Forecasts Expressed in Terms of Probability
        <https://doi.org/10.1175/1520-0493(1950)078%3C0001:VOFEIT%3E2.0.CO;2>`_, 1950.
    """
    return term_loss(
        input,
        target,
        BrierTerm(),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )
