r"""Generalized cross-entropy (the Lq loss) and its smoothed form, multiclass and binary."""

from __future__ import annotations

from torch import Tensor

from crossent.core import checks, config
from crossent.core.params import constrained
from crossent.engine import term_loss
from crossent.engine.binary import binary_term_loss
from crossent.functional import _params
from crossent.terms import LqTerm


@constrained(**_params.TERM, q=_params.Q, truncate=_params.TRUNCATE)
def generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    truncate: float | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Generalized cross-entropy, the Lq loss (Zhang & Sabuncu 2018), from logits.

    Per element, with ``p = softmax(z)`` and the target class ``t``:

    .. math::

        \ell = w_t \frac{1 - p_t^{q}}{q}, \qquad q \in [0, 1];

    ``q = 0`` is exactly cross-entropy and ``q = 1`` the unhinged loss ``1 - p_t``; between
    them it trades cross-entropy's fast fitting for MAE's robustness to label noise.
    ``1 - p_t^q = -expm1(q log p_t)`` keeps small ``q`` exact in float32: the loss is
    ``-log p_t - q (log p_t)^2 / 2 + O(q^2)`` per element, so it approaches cross-entropy
    as ``q -> 0`` (``q = 1e-4``: within ``1e-3`` while ``|log p_t| < 4``). With smoothing
    or probability targets ``P`` it is ``sum_k w_k P_k (1 - p_k^q) / q``.

    ``truncate=k`` gives the truncated Lq loss: ``(1 - max(p_t, k)^q) / q``, constant (zero
    gradient) where ``p_t <= k``; the paper prunes those samples, which is the same gradient.

    The definition gathers the target's probability ``p_t``; an implementation that raises
    every class's probability to ``q`` without the gather (seen in a popular blog post)
    computes something else. Here the paper's ``(1 - p_t^q)/q`` is the definition.

    Term (:class:`crossent.terms.LqTerm`): ``F = P (1 - e^(qs))/q``, ``G = -P e^(qs)``.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input``.
        q: exponent in [0, 1]. Default 0.7 (the paper's choice).
        truncate: ``k`` in (0, 1) for the truncated loss, or ``None``. Default None
            (the paper uses 0.5 when truncating).
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
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import generalized_cross_entropy
        >>> logits = torch.log(torch.tensor([[0.25, 0.75]]))
        >>> generalized_cross_entropy(logits, torch.tensor([0]), q=1.0)
        tensor(0.7500)

    References:
        Zhang & Sabuncu, `Generalized Cross Entropy Loss for Training Deep Neural Networks
        with Noisy Labels <https://arxiv.org/abs/1805.07836>`_, 2018.
    """
    term = LqTerm(q, truncate)
    return term_loss(
        input,
        target,
        term,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(**_params.TERM, q=_params.Q)
def smooth_generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    label_smoothing: float = 0.1,
    smoothing: str = "others",
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    inplace_backward: bool = False,
) -> Tensor:
    r"""Smooth generalized cross-entropy (SGCE): the Lq loss against a smoothed target.

    Per element, with ``p = softmax(z)`` and the smoothed target ``P``:

    .. math::

        \ell = \sum_k w_k P_k \frac{1 - p_k^{q}}{q} .

    The default ``smoothing="others"`` (``1 - eps`` on the target, ``eps/(K-1)`` on every
    other class) is the source's convention, so the ``q -> 0`` limit is
    ``cross_entropy(label_smoothing=eps, smoothing="others")``, not PyTorch's uniform
    smoothing; pass ``smoothing="uniform"`` for that one.

    The form found in the wild averages ``P_k (1 - p_k^q)/q`` over all ``N * K`` entries
    (a ``.mean()`` over the matrix), which is ``1/K`` of this loss: the same minimiser, a
    learning rate ``K`` times smaller. One published version also omits the target gather
    (it raises every class's probability to ``q`` unweighted by ``P``); the per-class sum
    above is the definition. Every class contributes, so this is the engine's full path.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices, or probabilities shaped like ``input`` (those need
            ``smoothing="uniform"``).
        q: exponent in [0, 1]. Default 0.7.
        label_smoothing: ``eps`` in [0, 1]. Default 0.1.
        smoothing: ``"others"`` or ``"uniform"``. Default ``"others"``.
        weight: class weights ``(C,)`` (PyTorch's meaning). Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
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
        >>> from crossent import smooth_generalized_cross_entropy
        >>> logits = torch.zeros(1, 4)
        >>> round(smooth_generalized_cross_entropy(logits, torch.tensor([2])).item(), 4)
        0.8872

    References:
        Dimachkie, `Cross-Entropy is All You Need... Or is It?
        <https://www.ntropy.com/blog/cross-entropy-is-all-you-need-or-is-it>`_, Ntropy, 2023;
        Zhang & Sabuncu, `Generalized Cross Entropy Loss
        <https://arxiv.org/abs/1805.07836>`_, 2018.
    """
    return term_loss(
        input,
        target,
        LqTerm(q),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        inplace_backward=inplace_backward,
    )


@constrained(
    q=_params.Q,
    truncate=_params.TRUNCATE,
    weight=_params.WEIGHT,
    pos_weight=_params.WEIGHT,
    reduction=_params.REDUCTION,
    label_smoothing=_params.LABEL_SMOOTHING,
)
def binary_generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    truncate: float | None = None,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""The Lq loss on single logits (sigmoid), for binary and multi-label targets.

    Per element, with ``p = sigmoid(z)`` and a target ``y`` in [0, 1]:

    .. math::

        \ell = w\left[p_w\, y \frac{1 - p^{q}}{q} + (1 - y) \frac{1 - (1 - p)^{q}}{q}\right];

    ``q = 0`` is :func:`crossent.binary_cross_entropy_with_logits`. ``weight`` and
    ``pos_weight`` as in PyTorch's BCE; ``label_smoothing`` moves targets to
    ``y (1 - eps) + eps/2``; ``truncate`` as in :func:`generalized_cross_entropy`.

    Args:
        input: logits, any shape.
        target: targets in [0, 1], the shape of ``input``.
        q: exponent in [0, 1]. Default 0.7.
        truncate: ``k`` in (0, 1), or ``None``. Default None.
        weight: per-element rescaling, broadcastable to ``input``. Default None.
        pos_weight: weight of the positive term, broadcastable to ``input``. Default None.
        reduction: ``"none" | "mean" | "sum"`` (``mean`` over all elements). Default "mean".
        label_smoothing: ``eps`` in [0, 1]. Default 0.

    Shape:
        - input: ``(*)``; target: ``(*)``; output: scalar, or ``(*)`` with ``"none"``.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import binary_generalized_cross_entropy
        >>> binary_generalized_cross_entropy(torch.tensor([0.0]), torch.tensor([1.0]), q=1.0)
        tensor(0.5000)

    References:
        Zhang & Sabuncu, `Generalized Cross Entropy Loss for Training Deep Neural Networks
        with Noisy Labels <https://arxiv.org/abs/1805.07836>`_, 2018.
    """
    term = LqTerm(q, truncate)
    return binary_term_loss(
        input,
        target,
        term,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@constrained(
    q=_params.Q,
    label_smoothing=_params.LABEL_SMOOTHING,
    smoothing=_params.SMOOTHING,
    weight=_params.WEIGHT,
    pos_weight=_params.WEIGHT,
    reduction=_params.REDUCTION,
)
def binary_smooth_generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    label_smoothing: float = 0.1,
    smoothing: str = "others",
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Smooth generalized cross-entropy on single logits (sigmoid), binary / multi-label.

    :func:`binary_generalized_cross_entropy` against a smoothed target. With two outcomes,
    ``smoothing="others"`` moves ``eps`` of the mass to the other outcome,
    ``y -> (1 - eps) y + eps (1 - y)`` (needs ``eps <= 1/2``), and ``"uniform"`` moves ``eps``
    towards 1/2, ``y -> (1 - eps) y + eps/2`` (PyTorch's convention). The ``q -> 0`` limit is
    binary cross-entropy against that target.

    Args:
        input: logits, any shape.
        target: targets in [0, 1], the shape of ``input``.
        q: exponent in [0, 1]. Default 0.7.
        label_smoothing: ``eps`` in [0, 1] (``[0, 1/2]`` with ``"others"``). Default 0.1.
        smoothing: ``"others"`` or ``"uniform"``. Default ``"others"``.
        weight: per-element rescaling, broadcastable to ``input``. Default None.
        pos_weight: weight of the positive term, broadcastable to ``input``. Default None.
        reduction: ``"none" | "mean" | "sum"`` (``mean`` over all elements). Default "mean".

    Shape:
        - input: ``(*)``; target: ``(*)``; output: scalar, or ``(*)`` with ``"none"``.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import binary_smooth_generalized_cross_entropy
        >>> x, y = torch.tensor([0.0]), torch.tensor([1.0])
        >>> round(binary_smooth_generalized_cross_entropy(x, y, q=1.0).item(), 4)
        0.5

    References:
        Dimachkie, `Cross-Entropy is All You Need... Or is It?
        <https://www.ntropy.com/blog/cross-entropy-is-all-you-need-or-is-it>`_, Ntropy, 2023.
    """
    eps = _params.check_binary_smoothing(label_smoothing, smoothing)
    term = LqTerm(q)
    if smoothing == "others" and eps > 0:
        checks.check_tensor("target", target)
        checks.check_devices(checks.check_tensor("input", input), target=target)
        if config.validate_args():
            checks.check_unit_interval("target", target)
        target = target * (1 - 2 * eps) + eps  # (1 - eps) y + eps (1 - y)
        eps = 0.0
    return binary_term_loss(
        input,
        target,
        term,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
        label_smoothing=eps,
    )
