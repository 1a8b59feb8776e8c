r"""Negative log-likelihood of log-probabilities, drop-in for PyTorch's ``nll_loss``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.core.params import constrained
from crossent.core.problem import reduce_losses
from crossent.core.targets import as_batch, check_input, prepare_targets
from crossent.functional import _params


@constrained(
    weight=_params.WEIGHT,
    size_average=_params.LEGACY_FLAG,
    ignore_index=_params.IGNORE_INDEX,
    reduce=_params.LEGACY_FLAG,
    reduction=_params.REDUCTION,
)
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Negative log-likelihood loss: input are log-probabilities, as PyTorch's ``nll_loss``.

    Per element, with ``x`` the input and ``t`` the target class:

    .. math::

        \ell = -w_t\, x_t ;

    ``mean`` divides by the sum of the target classes' weights over non-ignored elements
    (PyTorch's weighted mean), ``sum`` sums, ``none`` keeps ``(N, d1, ..., dn)``.

    It is one gather, computed directly (not as cross-entropy on the input): for normalised
    log-probabilities ``log_softmax(x) = x`` and the two agree, but ``nll_loss`` must also
    equal PyTorch's for inputs that are not normalised, where they differ. The gradient,
    ``-w_t`` at the target and 0 elsewhere, comes from autograd through the gather.

    Documented deviations from PyTorch, as for :func:`crossent.cross_entropy`: all targets
    ignored (or all target weights zero) gives 0 with ``mean`` (PyTorch: NaN); half inputs
    give a float32 loss; negative class weights raise; any integer target dtype is accepted.

    Args:
        input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)`` in ``[0, C)`` or
            ``ignore_index``.
        weight: class weights ``(C,)``, finite and non-negative. Default None.
        size_average: deprecated (PyTorch's): with ``reduce``, overrides ``reduction`` with a
            warning, as PyTorch does. Default None.
        ignore_index: class index that contributes nothing. Default -100.
        reduce: deprecated (PyTorch's), see ``size_average``. Default None.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.

    Shape:
        - input: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - target: ``()``, ``(N)`` or ``(N, d1, ..., dn)``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> from crossent import nll_loss
        >>> logp = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
        >>> round(nll_loss(logp, torch.tensor([0])).item(), 3)
        0.357

    References:
        PyTorch ``torch.nn.functional.nll_loss``.
    """
    input = check_input(input)
    reduction = _params.legacy_reduction(size_average, reduce, reduction)
    target = checks.check_tensor("target", target)
    checks.check_devices(input, target=target, weight=weight)
    if target.is_floating_point():
        raise TypeError(f"Expected `target` to hold class indices (integers), got {target.dtype}")
    input, target, unbatched = as_batch(input, target)
    n, k = input.shape[0], input.shape[1]
    weight = checks.check_class_weight(weight, k)
    targets = prepare_targets(input, target, weight, None, ignore_index, 0.0, "uniform")
    x = input.reshape(n, k, math.prod(input.shape[2:]))
    if k == 0:  # no classes, so every target is ignored: 0s, still attached to the graph
        picked = x.sum(dim=1).to(compute_dtype(input.dtype))
    else:
        picked = x.gather(1, targets.index.unsqueeze(1)).squeeze(1).to(compute_dtype(input.dtype))
    ew = targets.elem_weight.to(picked.dtype)
    # Ignored and zero-weight elements give 0 even where the input is -inf.
    losses = torch.where(ew == 0, torch.zeros_like(picked), -ew * picked)
    loss = reduce_losses(losses, targets, reduction)
    if reduction == "none":
        loss = loss.reshape(n, *input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss
