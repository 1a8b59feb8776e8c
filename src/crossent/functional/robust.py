r"""Losses robust to label noise: MAE, unhinged, reverse / symmetric / normalized CE, APL."""

from __future__ import annotations

from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype, overflow_safe_dtype
from crossent.core.params import Options, constrained
from crossent.engine import term_loss
from crossent.functional import _params
from crossent.functional._normalized import normalized_loss
from crossent.terms import (
    CrossEntropyTerm,
    FocalTerm,
    MAETerm,
    ReverseCrossEntropyTerm,
    UnhingedTerm,
    WeightedSumTerm,
)

_A = _params.DEFAULT_A


@constrained(**_params.TERM)
def mae_loss(
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
    r"""Mean absolute error between the target distribution and the softmax.

    .. math::

        \ell = \sum_k w_k \lvert P_k - p_k \rvert = 2 (1 - p_t) \text{ for a one-hot target,}

    symmetric, hence robust to uniform label noise (Ghosh et al. 2017), but slow to fit. Ma
    et al.'s code calls ``1 - p_t`` (half of this) "MAE": that is :func:`unhinged_loss`.

    Term (:class:`crossent.terms.MAETerm`): ``F = |P - e^s|``, ``G = -sign(P - e^s) e^s``;
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
        >>> from crossent import mae_loss
        >>> mae_loss(torch.log(torch.tensor([[0.75, 0.25]])), torch.tensor([0]))
        tensor(0.5000)

    References:
        Ghosh et al., `Robust Loss Functions under Label Noise for Deep Neural Networks
        <https://arxiv.org/abs/1712.09482>`_, 2017.
    """
    return term_loss(
        input,
        target,
        MAETerm(),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(**_params.TERM)
def unhinged_loss(
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
    r"""Unhinged loss ``1 - p_t`` (the Lq loss at ``q = 1``).

    .. math::

        \ell = \sum_k w_k P_k (1 - p_k) = w_t (1 - p_t) \text{ for a one-hot target.}

    Half of :func:`mae_loss` for one-hot targets; the passive "MAE" of Ma et al.'s code.

    Term (:class:`crossent.terms.UnhingedTerm`): ``F = P (1 - e^s)``, ``G = -P e^s``.

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
        >>> from crossent import unhinged_loss
        >>> unhinged_loss(torch.log(torch.tensor([[0.75, 0.25]])), torch.tensor([0]))
        tensor(0.2500)

    References:
        van Rooyen et al., `Learning with Symmetric Label Noise: The Importance of Being
        Unhinged <https://arxiv.org/abs/1505.07634>`_, 2015.
    """
    return term_loss(
        input,
        target,
        UnhingedTerm(),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(**_params.TERM, A=_params.A)
def reverse_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    A: float = _A,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Reverse cross-entropy (Wang et al. 2019): the prediction and the target swapped.

    .. math::

        \ell = -\sum_k w_k\, p_k \max(\log P_k, A) = -A (1 - p_t) \text{ for a one-hot target.}

    ``log 0`` is replaced by ``A < 0``. The default ``A = log(1e-4) ≈ -9.21`` is what the
    authors' code uses (it clamps the one-hot label at ``1e-4``) and what their published
    ``alpha``/``beta`` were tuned with; the paper's text says ``A = -4``. (Their code also
    clamps the prediction at ``1e-7``; this loss does not.)

    Term (:class:`crossent.terms.ReverseCrossEntropyTerm`): ``F = G = -e^s max(log P, A)``;
    it acts on every class.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        A: the value of ``log 0``, ``< 0``. Default ``log(1e-4)``.
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
        >>> from crossent import reverse_cross_entropy
        >>> logits = torch.log(torch.tensor([[0.75, 0.25]]))
        >>> reverse_cross_entropy(logits, torch.tensor([0]), A=-4.0)
        tensor(1.)

    References:
        Wang et al., `Symmetric Cross Entropy for Robust Learning with Noisy Labels
        <https://arxiv.org/abs/1908.06112>`_, 2019.
    """
    return term_loss(
        input,
        target,
        ReverseCrossEntropyTerm(A),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


def symmetric_term(alpha: float, beta: float, A: float) -> WeightedSumTerm:
    """The term of :func:`symmetric_cross_entropy`: ``alpha CE + beta RCE`` (checked values)."""
    return WeightedSumTerm([(alpha, CrossEntropyTerm()), (beta, ReverseCrossEntropyTerm(A))])


@constrained(**_params.TERM, alpha=_params.COEFFICIENT, beta=_params.COEFFICIENT, A=_params.A)
def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    A: float = _A,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Symmetric cross-entropy (Wang et al. 2019): ``alpha CE + beta RCE``.

    .. math::

        \ell = \alpha\, \mathrm{CE} + \beta\, \mathrm{RCE}
             = -\sum_k w_k \left[\alpha P_k \log p_k + \beta p_k \max(\log P_k, A)\right].

    ``alpha = 1, beta = 0`` is cross-entropy. The defaults ``alpha = 0.1, beta = 1`` are the
    paper's CIFAR-10 setting; ``A`` as in :func:`reverse_cross_entropy` (default
    ``log(1e-4) ≈ -9.21`` from the authors' code, which their ``alpha``/``beta`` were tuned
    with; the paper's text says ``-4``). Computed in one pass with the sum of both terms.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        alpha: weight of cross-entropy, ``>= 0``. Default 0.1.
        beta: weight of reverse cross-entropy, ``>= 0``. Default 1.
        A: the value of ``log 0``, ``< 0``. Default ``log(1e-4)``.
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
        >>> from crossent import symmetric_cross_entropy
        >>> logits = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(symmetric_cross_entropy(logits, torch.tensor([0]), A=-4.0).item(), 4)
        2.0693

    References:
        Wang et al., `Symmetric Cross Entropy for Robust Learning with Noisy Labels
        <https://arxiv.org/abs/1908.06112>`_, 2019.
    """
    term = symmetric_term(alpha, beta, A)
    # alpha CE stays finite where CE overflows (logits near 1e38): computed in float64 there
    wide = overflow_safe_dtype(checks.check_tensor("input", input))
    loss = term_loss(
        input if wide == compute_dtype(input.dtype) else input.to(wide),
        target,
        term,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )
    return loss.to(compute_dtype(input.dtype))


@constrained(**_params.ENGINE)
def normalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
) -> Tensor:
    r"""Normalized cross-entropy (Ma et al. 2020): CE over the sum of CE to every label.

    .. math::

        \ell = \frac{-\sum_k w_k P_k \log p_k}{-\sum_j \log p_j}
             = \frac{-w_t \log p_t}{-\sum_j \log p_j} \text{ (one-hot target)} .

    ``P`` is the target distribution (smoothed with ``label_smoothing``), ``w`` the class
    weights with PyTorch's meaning (``mean`` divides by the targets' weights); without weights
    the loss lies in ``[0, 1]``.

    The denominator makes it a ratio, not a per-class sum, so it is computed from the
    cross-entropy term's ``F`` and ``G`` with its own analytic gradient rather than by the
    engine (see :mod:`crossent.functional._normalized`). Robust to label noise but, alone,
    underfits: use it as the active part of :func:`active_passive_loss`. Masked classes
    (``-inf`` logits) are left out of the denominator.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)`` with ``C >= 2``.
        target: class indices, or probabilities shaped like ``input``.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.

    Shape:
        - input: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - target: ``()``, ``(N)`` or ``(N, d1, ..., dn)`` indices, or the shape of ``input``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> from crossent import normalized_cross_entropy
        >>> normalized_cross_entropy(torch.zeros(1, 4), torch.tensor([1]))
        tensor(0.2500)

    References:
        Ma et al., `Normalized Loss Functions for Deep Learning with Noisy Labels
        <https://arxiv.org/abs/2006.13554>`_, 2020.
    """
    return normalized_loss(
        input,
        target,
        CrossEntropyTerm(),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
    )


@constrained(**_params.ENGINE, gamma=_params.FOCUSING)
def normalized_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 0.5,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
) -> Tensor:
    r"""Normalized focal loss (Ma et al. 2020): focal loss over its sum to every label.

    .. math::

        \ell = \frac{-\sum_k w_k P_k (1 - p_k)^{\gamma} \log p_k}
                    {-\sum_j (1 - p_j)^{\gamma} \log p_j}
             = \frac{-w_t (1 - p_t)^{\gamma} \log p_t}{-\sum_j (1 - p_j)^{\gamma} \log p_j}
             \text{ (one-hot target)} .

    Built like :func:`normalized_cross_entropy` from the focal term (finite gradient for
    ``gamma < 1`` at saturated rows). The default ``gamma = 0.5`` is the authors' setting
    for NFL+RCE / NFL+MAE. Following the paper, the gradient flows through the whole ratio;
    the authors' code detaches the denominator and ``(1 - p_t)^gamma`` (``.data``), which
    gives a different gradient.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)`` with ``C >= 2``.
        target: class indices, or probabilities shaped like ``input``.
        gamma: focusing parameter ``>= 0``. Default 0.5.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.

    Shape:
        - input: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - target: ``()``, ``(N)`` or ``(N, d1, ..., dn)`` indices, or the shape of ``input``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> from crossent import normalized_focal_loss
        >>> normalized_focal_loss(torch.zeros(1, 4), torch.tensor([1]), gamma=2.0)
        tensor(0.2500)

    References:
        Ma et al., `Normalized Loss Functions for Deep Learning with Noisy Labels
        <https://arxiv.org/abs/2006.13554>`_, 2020.
    """
    return normalized_loss(
        input,
        target,
        FocalTerm(gamma),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
    )


@constrained(
    **_params.ENGINE,
    active=Options(("nce", "nfl")),
    passive=Options(("rce", "mae")),
    alpha=_params.COEFFICIENT,
    beta=_params.COEFFICIENT,
    gamma=_params.FOCUSING,
    A=_params.A,
)
def active_passive_loss(
    input: Tensor,
    target: Tensor,
    *,
    active: str = "nce",
    passive: str = "rce",
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    A: float = _A,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
) -> Tensor:
    r"""Active passive loss (Ma et al. 2020): ``alpha * active + beta * passive``.

    .. math::

        \ell = \alpha\, L_{\text{active}} + \beta\, L_{\text{passive}},

    with ``active`` one of ``"nce"`` (:func:`normalized_cross_entropy`) or ``"nfl"``
    (:func:`normalized_focal_loss` with ``gamma``) and ``passive`` one of ``"rce"``
    (:func:`reverse_cross_entropy` with ``A``) or ``"mae"``. The passive ``"mae"`` is the
    authors' ``1 - p_t`` (:func:`unhinged_loss`), half of :func:`mae_loss` — their code's
    "reduced MAE". The defaults ``alpha = beta = 1`` are the paper's CIFAR-10 NCE+RCE
    setting. The active part is normalized (not an engine term), the passive part runs on
    the engine; their gradients add. ``weight``, ``ignore_index``, ``label_smoothing`` and
    ``smoothing`` apply to both parts.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)`` with ``C >= 2``.
        target: class indices, or probabilities shaped like ``input``.
        active: ``"nce"`` or ``"nfl"``. Default ``"nce"``.
        passive: ``"rce"`` or ``"mae"``. Default ``"rce"``.
        alpha: weight of the active loss, ``>= 0``. Default 1.
        beta: weight of the passive loss, ``>= 0``. Default 1.
        gamma: NFL's focusing parameter ``>= 0`` (only with ``active="nfl"``). Default 0.5.
        A: RCE's ``log 0``, ``< 0`` (only with ``passive="rce"``). Default ``log(1e-4)``.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"``. Default ``"uniform"``.

    Shape:
        - input: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - target: ``()``, ``(N)`` or ``(N, d1, ..., dn)`` indices, or the shape of ``input``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> from crossent import active_passive_loss
        >>> loss = active_passive_loss(torch.zeros(1, 4), torch.tensor([1]), passive="mae")
        >>> loss
        tensor(1.)

    References:
        Ma et al., `Normalized Loss Functions for Deep Learning with Noisy Labels
        <https://arxiv.org/abs/2006.13554>`_, 2020.
    """
    active_term = CrossEntropyTerm() if active == "nce" else FocalTerm(gamma)
    passive_term = ReverseCrossEntropyTerm(A) if passive == "rce" else UnhingedTerm()
    common = dict(
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
    )
    act = normalized_loss(input, target, active_term, **common)
    pas = term_loss(input, target, passive_term, **common)
    return alpha * act + beta * pas
