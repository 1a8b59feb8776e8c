r"""Cross-entropy and binary cross-entropy from logits, drop-in for PyTorch's.

Also the two reference levels every training curve is read against: the chance loss
``ln K`` and the minimum achievable loss under label smoothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.params import Integer, constrained
from crossent.core.span import span_min_achievable_loss
from crossent.core.targets import check_smoothing, smoothing_levels
from crossent.engine import term_loss
from crossent.engine.binary import binary_term_loss
from crossent.functional import _params as P
from crossent.terms import CrossEntropyTerm

_CE = CrossEntropyTerm()


@constrained(**P.TERM, z_loss=P.Z_LOSS, size_average=P.LEGACY_FLAG, reduce=P.LEGACY_FLAG)
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    inplace_backward: bool = False,
) -> Tensor:
    r"""Cross-entropy between logits and class indices or class probabilities.

    Equal to :func:`torch.nn.functional.cross_entropy` (values and gradients, to float
    rounding) for every combination of its arguments, with less memory and an analytic
    gradient. Per element, with ``s = log_softmax(z)`` and target distribution ``P``:

    .. math::

        \ell = -\sum_k w_k P_k s_k + \lambda\,\operatorname{lse}(z)^2

    * class indices ``t``: ``P = onehot(t)``; with ``label_smoothing = eps``,
      ``smoothing="uniform"`` gives ``P = (1-eps) onehot(t) + eps/K`` (PyTorch, Szegedy et
      al.) and ``smoothing="others"`` gives ``1-eps`` on ``t`` and ``eps/(K-1)`` elsewhere;
    * probabilities: ``P = (1-eps) P + eps/K``.

    Reductions: ``mean`` divides by the sum of the target classes' weights over non-ignored
    elements for class indices (PyTorch's weighted mean), by the element count
    ``N * d1 * ... * dn`` for probabilities; ``sum``; ``none``.

    Term: ``F(s, P) = -P s``, ``G(s, P) = -P``; gradient ``dl/dz = softmax(z) - P`` unweighted.

    Documented deviations from PyTorch:

    * a batch whose targets are all ``ignore_index`` (or whose target weights are all zero)
      gives loss 0 and a zero gradient with ``mean`` (PyTorch: NaN);
    * fp16/bf16 logits give a float32 loss (PyTorch's half loss overflows near the fp16
      range); the gradient keeps the input dtype;
    * negative class weights raise (PyTorch accepts them);
    * integer targets of any integer dtype are accepted (PyTorch requires int64);
    * a class weight of another floating dtype than the logits is cast to their compute
      dtype (PyTorch raises).

    The positional arguments are PyTorch's, in its order; the crossent-only ones are
    keyword-only. Bad arguments raise a ``ValueError`` that is also a ``RuntimeError`` (what
    PyTorch raises for many of them), naming the argument and the value.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)`` in ``[0, C)`` or
            ``ignore_index``; or probabilities shaped like ``input``.
        weight: class weights ``(C,)``, finite and non-negative. Default: all ones.
        size_average: deprecated (PyTorch's): with ``reduce``, overrides ``reduction`` with a
            warning, as PyTorch does. Default None.
        ignore_index: class index that contributes nothing (class-index targets). Default -100.
        reduce: deprecated (PyTorch's), see ``size_average``. Default None.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` or ``"others"`` (needs ``K >= 2`` and ``eps <= (K-1)/K``,
            class-index targets only). Default ``"uniform"``.
        z_loss: ``lam >= 0``; adds ``lam * logsumexp(z)^2`` per non-ignored element
            (unweighted; PaLM's auxiliary loss). Default 0.
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
        >>> from crossent import cross_entropy
        >>> logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
        >>> round(cross_entropy(logits, torch.tensor([0])).item(), 3)
        0.357

    References:
        Szegedy et al., `Rethinking the Inception Architecture for Computer Vision
        <https://arxiv.org/abs/1512.00567>`_, 2016 (label smoothing);
        Chowdhery et al., `PaLM <https://arxiv.org/abs/2204.02311>`_, 2022 (z-loss).
    """
    return term_loss(
        input,
        target,
        _CE,
        weight=weight,
        ignore_index=ignore_index,
        reduction=P.legacy_reduction(size_average, reduce, reduction),
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        z_loss=z_loss,
        inplace_backward=inplace_backward,
    )


@constrained(
    weight=P.WEIGHT,
    size_average=P.LEGACY_FLAG,
    reduce=P.LEGACY_FLAG,
    reduction=P.REDUCTION,
    pos_weight=P.WEIGHT,
    label_smoothing=P.LABEL_SMOOTHING,
)
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Binary / multi-label cross-entropy from logits, equal to PyTorch's.

    .. math::

        \ell = -w \left[p\, y \log\sigma(z) + (1 - y) \log\sigma(-z)\right],
        \qquad y \leftarrow y (1 - \varepsilon) + \varepsilon / 2

    ``w`` is ``weight`` (per element, broadcast), ``p`` is ``pos_weight`` (broadcast, e.g.
    ``(C,)`` per class). ``mean`` is the plain mean over all elements. It is the engine at
    ``K = 2`` per element: equal to two-class :func:`cross_entropy` on logits ``(0, z)``.
    Targets may be soft (in [0, 1]); a target, ``weight`` or ``pos_weight`` that requires grad
    gets its gradient. Deviations from PyTorch (documented): a target outside [0, 1] raises
    (PyTorch computes a meaningless value), and ``mean`` of an empty input is 0 (PyTorch: NaN).

    Args:
        input: logits, any shape.
        target: targets in [0, 1], same shape as ``input``.
        weight: per-element rescaling, broadcastable to ``input``. Default None.
        size_average: deprecated (PyTorch's): with ``reduce``, overrides ``reduction`` with a
            warning, as PyTorch does. Default None.
        reduce: deprecated (PyTorch's), see ``size_average``. Default None.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        pos_weight: weight of positive examples, broadcastable to ``input``. Default None.
        label_smoothing: ``eps`` in [0, 1], moving targets towards 1/2 (keyword-only).
            Default 0.

    Shape:
        - input: ``(*)``; target: ``(*)``; output: scalar, or ``(*)`` with ``"none"``.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import binary_cross_entropy_with_logits
        >>> loss = binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0]))
        >>> round(loss.item(), 4)
        0.6931

    References:
        PyTorch ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    return binary_term_loss(
        input,
        target,
        _CE,
        weight=weight,
        pos_weight=pos_weight,
        reduction=P.legacy_reduction(size_average, reduce, reduction),
        label_smoothing=label_smoothing,
    )


@constrained(num_classes=Integer(1))
def chance_loss(num_classes: int) -> float:
    r"""Cross-entropy of a uniform guess over ``K`` classes: ``ln K``.

    A model whose loss stays at ``ln K`` has learnt nothing.

    Args:
        num_classes: ``K >= 1``.

    Returns:
        ``ln K``.

    Example:
        >>> round(chance_loss(10), 4)
        2.3026
    """
    return math.log(num_classes)


@constrained(
    num_classes=Integer(1),
    label_smoothing=P.LABEL_SMOOTHING,
    smoothing=P.SMOOTHING,
    target=P.WEIGHT,
    ignore_index=P.IGNORE_INDEX,
)
def min_achievable_loss(
    num_classes: int,
    label_smoothing: float,
    smoothing: str = "uniform",
    *,
    target: Tensor | None = None,
    ignore_index: int = -100,
) -> float:
    r"""The smallest cross-entropy reachable against smoothed targets: their entropy.

    .. math::

        H(P) = -\sum_k P_k \ln P_k

    with ``P`` the smoothed one-hot target (see :func:`cross_entropy`). For ``K = 10`` and
    ``eps = 0.1`` this is 0.5448 with ``"others"`` (an article quotes 0.544 after rounding
    0.1/9 to 0.0111) and 0.5003 with ``"uniform"``. Without smoothing it is 0.

    With ``smoothing="span"`` the target depends on each token's neighbours: give the tags
    ``(B, T)`` as ``target``; the result is the mean over the non-ignored tokens of each
    token's entropy (:func:`crossent.core.span.span_min_achievable_loss`).

    Args:
        num_classes: ``K >= 1``.
        label_smoothing: ``eps`` in [0, 1] (``[0, 1/2]`` for ``"span"``).
        smoothing: ``"uniform"``, ``"others"`` or ``"span"``.
        target: the tags ``(B, T)``; required with ``"span"``, unused otherwise.
        ignore_index: the tags' ignored value (``"span"``). Default -100.

    Returns:
        The entropy of the smoothed target (its mean over the tokens for ``"span"``), in nats.

    Example:
        >>> round(min_achievable_loss(10, 0.1, "others"), 4)
        0.5448
    """
    k = num_classes
    eps = check_smoothing(label_smoothing, smoothing, k)
    if smoothing == "span":
        if target is None:
            raise checks.fail("target", "the tags (B, T) with smoothing='span'", target)
        return float(span_min_achievable_loss(target, k, eps, ignore_index=ignore_index))
    off, on = smoothing_levels(eps, smoothing, k)
    return 0.0 - _xlogx(on) - (k - 1) * _xlogx(off)  # 0.0 - ...: no -0.0 without smoothing


def _xlogx(p: float) -> float:
    return p * math.log(p) if p > 0 else 0.0


def minimum_over_logits(
    loss: Callable[[Tensor, Tensor], Tensor], target: Tensor, logits_shape: tuple[int, ...]
) -> float:
    """The smallest ``loss(logits, target)`` over every logit, found by L-BFGS from zeros.

    For losses with no closed-form minimum under their smoothing (:func:`min_achievable_loss`
    is the cross-entropy's): the target is fixed, the logits ``(1, K)`` (float64) are free.
    """
    logits = torch.zeros(logits_shape, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([logits], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = loss(logits, target)
        value.backward()
        return value

    optimizer.step(closure)
    with torch.no_grad():
        return float(loss(logits, target))
