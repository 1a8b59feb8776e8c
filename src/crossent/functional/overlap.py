r"""Overlap losses for segmentation: Dice, Tversky, focal Tversky and the unified focal loss.

They score a prediction by its overlap with the target *as a set*: with probabilities ``p``
and targets ``g`` of one class, summed over the pixels of the batch (or of one image),

.. math::

    TP = \sum_i p_i g_i, \qquad FP = \sum_i p_i (1 - g_i), \qquad FN = \sum_i (1 - p_i) g_i,

and a loss built from the ratio of these sums. One pixel's loss therefore depends on every
other pixel's prediction: an overlap loss is not a sum of per-element terms
``sum_k w_k F(s_k, P_k)``, so it is no engine term (docs/design.md, "One engine") and the
engine's per-row
gradient formula does not apply. These functions are plain tensor code, differentiated by
autograd; their cost is a few reductions over ``N * K * d1 ... dn`` values.

Common conventions:

* ``mode="multiclass"``: logits ``(N, K, d1, ..., dn)`` with ``K >= 2``, softmax over classes;
  targets are class indices ``(N, d1, ..., dn)`` (``ignore_index`` excluded) or probabilities
  shaped like the logits.
* ``mode="binary"``: one logit per pixel, any shape ``(N, ...)``, sigmoid; targets in [0, 1]
  of the same shape (or ``(N, d1, ..., dn)`` for logits ``(N, 1, d1, ..., dn)``).
  ``mode="multilabel"``: logits ``(N, C, ...)``, a sigmoid per channel,
  each channel scored as its own class. In both, a target equal to ``ignore_index`` excludes
  that element.
* ``smooth`` (default 1.0) is added to numerator and denominator of each index, so an empty
  class predicted empty scores 1; ``per_image=False`` (default) sums the statistics over the
  whole batch, ``per_image=True`` per image; the loss is the mean over classes (and images).
* ``1 - p`` is computed as ``-expm1(log p)`` and ``1 - TI`` as ``(alpha FP + beta FN) / den``,
  so near-perfect predictions keep their precision in float32.

Example:
    >>> import torch
    >>> logits = torch.randn(2, 3, 8, 8)
    >>> target = torch.randint(0, 3, (2, 8, 8))
    >>> bool(tversky_loss(logits, target, alpha=0.5, beta=0.5) == dice_loss(logits, target))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.autograd import compute_dtype, overflow_safe_dtype
from crossent.core.params import constrained
from crossent.functional import _params
from crossent.functional._overlap_sets import MODES, Sets, check_tversky_sum, prepare

__all__ = [
    "MODES",
    "dice_loss",
    "focal_tversky_loss",
    "tversky_loss",
    "unified_focal_loss",
]


@constrained(**_params.OVERLAP)
def dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: str = "multiclass",
    smooth: float = 1.0,
    per_image: bool = False,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Soft Dice loss: one minus the Dice coefficient of each class, averaged over classes.

    .. math::

        \ell_c = 1 - \frac{TP_c + s}{TP_c + \tfrac12 FP_c + \tfrac12 FN_c + s}
               = 1 - \frac{2\,TP_c + 2s}{\sum_i p_{ic} + \sum_i g_{ic} + 2s}

    It is exactly :func:`tversky_loss` with ``alpha = beta = 0.5``; the smoothing enters as in
    the Tversky index (as in Yeung et al.'s code, whose Dice is their Tversky index at
    ``delta = 0.5``), which is the common ``(2 TP + s') / (|P| + |G| + s')`` with ``s' = 2s``.
    The statistics are linear in ``p`` (the soft Dice of Sudre et al.; Milletari et al. square
    ``p`` and ``g`` in the denominator). See the module docstring for ``mode`` and the layout.

    Args:
        input: logits; ``(N, K, d1, ..., dn)`` for ``"multiclass"`` and ``"multilabel"``, any
            ``(N, ...)`` for ``"binary"``.
        target: class indices ``(N, d1, ..., dn)`` or probabilities shaped like ``input``
            (``"multiclass"``); values in [0, 1] shaped like ``input`` otherwise.
        mode: ``"multiclass" | "binary" | "multilabel"``. Default ``"multiclass"``.
        smooth: ``s >= 0``. Default 1.0.
        per_image: statistics per image instead of over the whole batch. Default False.
        ignore_index: target value whose pixels are excluded. Default -100.
        reduction: ``"mean"`` (over classes, and images), ``"sum"`` or ``"none"``. Default
            ``"mean"``.

    Shape:
        - output: scalar; with ``"none"`` the per-class losses ``(C,)``, or ``(N, C)`` with
          ``per_image=True`` (``C`` = ``K``, the channels, or 1 for ``"binary"``).

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 2)  # p = 0.5 everywhere: TP = FP = FN = 0.5 per class
        >>> dice_loss(logits, torch.tensor([[0, 1]])).item()
        0.25

    References:
        Milletari et al., `V-Net <https://arxiv.org/abs/1606.04797>`_, 2016;
        Sudre et al., `Generalised Dice overlap as a deep learning loss function
        <https://arxiv.org/abs/1707.03237>`_, 2017.
    """
    return tversky_loss(
        input,
        target,
        alpha=0.5,
        beta=0.5,
        mode=mode,
        smooth=smooth,
        per_image=per_image,
        ignore_index=ignore_index,
        reduction=reduction,
    )


@constrained(**_params.TVERSKY)
def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    mode: str = "multiclass",
    smooth: float = 1.0,
    per_image: bool = False,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Tversky loss: one minus the Tversky index of each class, averaged over classes.

    .. math::

        TI_c = \frac{TP_c + s}{TP_c + \alpha FP_c + \beta FN_c + s}, \qquad
        \ell_c = 1 - TI_c = \frac{\alpha FP_c + \beta FN_c}{TP_c + \alpha FP_c + \beta FN_c + s}

    ``alpha`` weighs false positives and ``beta`` false negatives (Salehi et al.; their best
    setting, the default, is ``alpha = 0.3``, ``beta = 0.7``: missing a lesion costs more than a
    false alarm). ``alpha = beta = 0.5`` is :func:`dice_loss`; ``alpha = beta = 1`` is the
    soft Jaccard (IoU) loss. A class with no target and no prediction (or an empty set when
    ``smooth = 0``) scores ``TI = 1``. Arguments as in :func:`dice_loss`.

    Args:
        input: logits (see :func:`dice_loss`).
        target: targets (see :func:`dice_loss`).
        alpha: weight of false positives, ``>= 0``. Default 0.3.
        beta: weight of false negatives, ``>= 0``. Default 0.7.
        mode: ``"multiclass" | "binary" | "multilabel"``. Default ``"multiclass"``.
        smooth: ``s >= 0``. Default 1.0.
        per_image: statistics per image instead of over the whole batch. Default False.
        ignore_index: target value whose pixels are excluded. Default -100.
        reduction: ``"mean" | "sum" | "none"`` over the per-class losses. Default ``"mean"``.

    Shape:
        - output: scalar; ``(C,)`` or ``(N, C)`` with ``"none"`` (see :func:`dice_loss`).

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 1, 4)
        >>> target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> round(tversky_loss(logits, target, mode="binary").item(), 4)
        0.3333

    References:
        Salehi et al., `Tversky loss function for image segmentation using 3D fully
        convolutional deep networks <https://arxiv.org/abs/1706.05721>`_, 2017.
    """
    check_tversky_sum(alpha, beta)
    counts = tversky_statistics(
        input, target, mode=mode, per_image=per_image, ignore_index=ignore_index
    )
    return tversky_from_statistics(
        counts, alpha=alpha, beta=beta, smooth=smooth, reduction=reduction
    )


@constrained(**_params.TVERSKY, gamma=_params.COEFFICIENT)
def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    mode: str = "multiclass",
    smooth: float = 1.0,
    per_image: bool = False,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Focal Tversky loss: ``(1 - TI_c)^gamma``, averaged over classes.

    .. math::

        \ell_c = (1 - TI_c)^{\gamma}

    with :math:`TI_c` the Tversky index of :func:`tversky_loss`. ``gamma`` is the exponent
    itself: Abraham & Khan write ``(1 - TI)^{1/\gamma}`` and recommend their ``gamma = 4/3``,
    which is the default ``gamma = 0.75`` here. ``gamma < 1`` raises the loss (and its gradient)
    of classes that are already well segmented relative to badly segmented ones; ``gamma = 1``
    is :func:`tversky_loss`. At ``TI = 1`` exactly the gradient is taken as 0 (the derivative of
    ``x^gamma`` at 0 is infinite for ``gamma < 1``). Arguments as in :func:`tversky_loss`.

    Args:
        input: logits (see :func:`dice_loss`).
        target: targets (see :func:`dice_loss`).
        alpha: weight of false positives, ``>= 0``. Default 0.3.
        beta: weight of false negatives, ``>= 0``. Default 0.7.
        gamma: exponent, ``>= 0``. Default 0.75.
        mode: ``"multiclass" | "binary" | "multilabel"``. Default ``"multiclass"``.
        smooth: ``s >= 0``. Default 1.0.
        per_image: statistics per image instead of over the whole batch. Default False.
        ignore_index: target value whose pixels are excluded. Default -100.
        reduction: ``"mean" | "sum" | "none"`` over the per-class losses. Default ``"mean"``.

    Shape:
        - output: scalar; ``(C,)`` or ``(N, C)`` with ``"none"`` (see :func:`dice_loss`).

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 1, 4)
        >>> target = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> round(focal_tversky_loss(logits, target, mode="binary").item(), 4)
        0.4387

    References:
        Abraham and Khan, `A Novel Focal Tversky loss function with improved Attention U-Net
        for lesion segmentation <https://arxiv.org/abs/1810.07842>`_, 2019.
    """
    check_tversky_sum(alpha, beta)
    counts = tversky_statistics(
        input, target, mode=mode, per_image=per_image, ignore_index=ignore_index
    )
    return tversky_from_statistics(
        counts, alpha=alpha, beta=beta, smooth=smooth, reduction=reduction, gamma=gamma
    )


@constrained(**_params.UNIFIED)
def unified_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: float = 0.5,
    delta: float = 0.6,
    gamma: float = 0.5,
    asymmetric: bool = True,
    mode: str = "multiclass",
    smooth: float = 1.0,
    per_image: bool = False,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Unified focal loss (Yeung et al.): a focal cross-entropy plus a focal Tversky loss.

    With ``lambda = weight``, class 0 the background and every other class rare (foreground):

    .. math::

        \mathcal{L} = \lambda\, \mathcal{L}_{F} + (1 - \lambda)\, \mathcal{L}_{FT}

        \mathcal{L}_{F} = \frac{1}{|I|} \sum_{i \in I} \Big[
            -(1-\delta)\,(1 - p_{i0})^{\gamma}\, g_{i0} \log p_{i0}
            - \delta \sum_{c \ge 1} m_{ic}\, g_{ic} \log p_{ic} \Big]

        \mathcal{L}_{FT} = \frac{1}{K}\Big[ (1 - mTI_0)\, \text{or}\, (1 - mTI_0)^{1-\gamma}
            + \sum_{c \ge 1} (1 - mTI_c)^{1-\gamma} \Big], \quad
        mTI_c = \frac{TP_c + s}{TP_c + \delta FN_c + (1-\delta) FP_c + s}

    ``asymmetric=True`` (the default and the paper's recommendation, "asymmetric unified focal
    loss") keeps the rare classes' cross-entropy unmodulated (``m = 1``) and the background's
    Tversky term linear: the background is suppressed, the foreground enhanced.
    ``asymmetric=False`` is the symmetric variant: ``m_{ic} = (1 - p_{ic})^\gamma`` and the
    exponent ``1 - gamma`` on every class. ``delta`` weighs false negatives in ``mTI`` and the
    rare classes in the cross-entropy; ``gamma`` in [0, 1] both suppresses (``(1-p)^gamma``)
    and enhances (``(1-mTI)^{1-gamma}``). In ``"binary"`` mode the two classes are background
    ``1 - sigmoid(z)`` and foreground ``sigmoid(z)``; in ``"multilabel"`` mode each channel is
    such a binary problem and the losses are averaged over channels.

    Where paper and code differ:

    * ``weight`` multiplies the focal (cross-entropy) part, as in the paper's
      ``L_aUF = lambda L_maF + (1 - lambda) L_maFT`` (the authors' ``asym_unified_focal_loss``
      puts ``weight`` on the Tversky part; the same at the default 0.5).
    * ``delta`` on false negatives and ``gamma`` used as in the authors' code (defaults
      ``weight=0.5``, ``delta=0.6``, ``gamma=0.5`` from ``asym_unified_focal_loss``).
    * the code clips ``p`` to [1e-7, 1 - 1e-7] and smooths with 1e-7; here ``log p`` comes from
      ``log_softmax``/``logsigmoid`` (no clipping) and ``smooth`` defaults to 1.0.
    * the code computes the Tversky index per image and the cross-entropy over the batch: that
      is ``per_image=True`` here (the default ``per_image=False`` pools the batch).
    * the code is binary (two softmax channels); ``"multiclass"`` with ``K > 2`` treats every
      class but 0 as rare, one reading of the paper's multi-class form.

    Args:
        input: logits (see :func:`dice_loss`).
        target: targets (see :func:`dice_loss`).
        weight: ``lambda`` in [0, 1], weight of the focal part. Default 0.5.
        delta: ``delta`` in [0, 1]. Default 0.6.
        gamma: ``gamma`` in [0, 1]. Default 0.5.
        asymmetric: asymmetric (True) or symmetric (False) variant. Default True.
        mode: ``"multiclass" | "binary" | "multilabel"``. Default ``"multiclass"``.
        smooth: ``s >= 0`` in ``mTI``. Default 1.0.
        per_image: one loss per image instead of one over the whole batch. Default False.
        ignore_index: target value whose pixels are excluded. Default -100.
        reduction: over images with ``per_image=True``: ``"mean" | "sum" | "none"``; without
            it the batch is one set and every reduction returns that one value. Default
            ``"mean"``.

    Shape:
        - output: scalar; ``(N,)`` with ``per_image=True`` and ``reduction="none"``.

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 2, 16, 16)
        >>> target = torch.randint(0, 2, (2, 16, 16))
        >>> unified_focal_loss(logits, target).shape
        torch.Size([])

    References:
        Yeung et al., `Unified Focal loss: Generalising Dice and cross entropy-based losses to
        handle class imbalanced medical image segmentation
        <https://arxiv.org/abs/2102.04525>`_, Computerized Medical Imaging and Graphics 95,
        2022; code: https://github.com/mlyg/unified-focal-loss.
    """
    stats = unified_statistics(
        input,
        target,
        delta=delta,
        gamma=gamma,
        asymmetric=asymmetric,
        mode=mode,
        per_image=per_image,
        ignore_index=ignore_index,
    )
    return unified_from_statistics(
        stats,
        weight=weight,
        delta=delta,
        gamma=gamma,
        asymmetric=asymmetric,
        smooth=smooth,
        reduction=reduction,
    ).to(compute_dtype(input.dtype))


# Statistics and the losses formed from them. With per_image=False the statistics are sums
# over the images and pixels of the batch, so those of two batches add up to those of their
# union: the fused linear layer (crossent.linear_loss) sums them over chunks of rows.


def tversky_statistics(
    input: Tensor, target: Tensor, *, mode: str, per_image: bool, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(TP, FP, FN)`` per problem and class: ``(L, K)``, or ``(N, L, K)`` with ``per_image``."""
    sets = prepare(input, target, mode, ignore_index, background=False)
    return _set_counts(sets, -torch.expm1(sets.logp), (3,) if per_image else (0, 3))


def tversky_from_statistics(
    counts: tuple[Tensor, Tensor, Tensor],
    *,
    alpha: float,
    beta: float,
    smooth: float,
    reduction: str,
    gamma: float | None = None,
) -> Tensor:
    """``1 - TI_c`` (or ``(1 - TI_c)^gamma``) per class, flattened over problems, reduced."""
    ones = _complement(counts, alpha, beta, smooth).flatten(-2)
    return _reduce(ones if gamma is None else _safe_pow(ones, gamma), reduction)


def unified_statistics(
    input: Tensor,
    target: Tensor,
    *,
    delta: float,
    gamma: float,
    asymmetric: bool,
    mode: str,
    per_image: bool,
    ignore_index: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(focal sum, valid pixels, TP, FP, FN)`` of the unified focal loss.

    The first two are ``(L,)`` and the counts ``(L, K)`` (two classes, background and
    foreground, in the sigmoid modes), each with a leading ``N`` with ``per_image``.
    """
    # logits near float32's range: log p of a class overflows to -inf in float32
    if isinstance(input, Tensor) and input.is_floating_point():
        input = input.to(overflow_safe_dtype(input))
    sets = prepare(input, target, mode, ignore_index, background=True)
    p_rest = -torch.expm1(sets.logp)  # 1 - p = -expm1(log p)
    # Focal part: per pixel -w_c m_c g_c log p_c summed over classes.
    k = sets.logp.shape[2]
    class_w = torch.full((k,), float(delta), dtype=sets.logp.dtype, device=sets.logp.device)
    class_w[0] = 1.0 - delta
    modulator = _safe_pow(p_rest, gamma)
    if asymmetric:
        modulator = torch.cat([modulator[:, :, :1], torch.ones_like(modulator[:, :, 1:])], 2)
    # g log p is 0 where g = 0, also at log p = -inf (no 0 * inf)
    g_logp = torch.where(sets.g == 0, torch.zeros_like(sets.logp), sets.g * sets.logp)
    per_pixel = -(class_w.view(1, 1, k, 1) * modulator * g_logp).sum(2)  # (N, L, S)
    pixel_dims = (2,) if per_image else (0, 2)
    count = sets.valid.squeeze(2).expand_as(per_pixel).sum(pixel_dims)
    counts = _set_counts(sets, p_rest, (3,) if per_image else (0, 3))
    # summed in float64: per-pixel terms near float32's range would overflow a float32 sum
    focal_sum = per_pixel.sum(pixel_dims, dtype=torch.float64)
    return (focal_sum, count, *counts)


def unified_from_statistics(
    stats: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    *,
    weight: float,
    delta: float,
    gamma: float,
    asymmetric: bool,
    smooth: float,
    reduction: str,
) -> Tensor:
    """The unified focal loss from :func:`unified_statistics`.

    A scalar for the batch as one set; per image, ``(N,)`` reduced by ``reduction``.
    """
    focal_sum, count, *counts = stats
    focal = focal_sum / count.clamp_min(1)  # mean over valid pixels (float64, see above)
    # Focal Tversky part with delta on false negatives, mean over classes.
    ones = _complement(tuple(counts), 1.0 - delta, delta, smooth)
    enhanced = _safe_pow(ones, 1.0 - gamma)
    if asymmetric:
        enhanced = torch.cat([ones[..., :1], enhanced[..., 1:]], -1)
    tversky = enhanced.mean(-1)
    loss = (weight * focal + (1.0 - weight) * tversky).mean(-1)  # mean over problems L
    return _reduce(loss.to(tversky.dtype), reduction)  # the identity on the batch's scalar


def _set_counts(sets: Sets, p_rest: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """``TP, FP, FN`` summed over ``dims``; ``p_rest`` is ``1 - p``."""
    p = torch.exp(sets.logp) * sets.valid
    tp = (p * sets.g).sum(dims)
    fp = (p * (1.0 - sets.g)).sum(dims)
    fn = (p_rest * sets.g).sum(dims)
    return tp, fp, fn


def _complement(
    counts: tuple[Tensor, Tensor, Tensor], alpha: float, beta: float, smooth: float
) -> Tensor:
    """``1 - TI = (alpha FP + beta FN) / (TP + alpha FP + beta FN + s)``.

    An empty pair (denominator 0, only possible with ``s = 0``) gives 0.
    """
    tp, fp, fn = counts
    errors = alpha * fp + beta * fn
    den = tp + errors + smooth
    positive = den > 0
    return torch.where(positive, errors / torch.where(positive, den, 1.0), 0.0)


def _safe_pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for ``x >= 0`` with gradient 0 (not ``inf * 0``) where ``x = 0``."""
    if exponent == 0:
        return torch.ones_like(x)
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0) ** exponent, 0.0)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
