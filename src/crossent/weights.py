r"""Class weights from label counts: inverse frequency and the effective number of samples.

The weights are meant for the ``weight=`` argument of every loss (PyTorch's meaning: the
weighted ``mean`` divides by the summed weights of the targets, so a weighted loss trains at a
step size comparable to the unweighted one).

Example:
    >>> import torch
    >>> labels = torch.tensor([0, 0, 0, 1])
    >>> class_weights(class_counts(labels, 2), method="inverse")
    tensor([0.5000, 1.5000])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from crossent.core import checks, config
from crossent.core.targets import _check_index_values

_METHODS = ("inverse", "inverse_sqrt", "effective_number")


def class_weights(
    counts: Sequence[float] | np.ndarray | Tensor,
    *,
    method: str = "inverse",
    beta: float = 0.999,
    normalize: bool = True,
) -> Tensor:
    r"""Per-class weights from the number of training examples ``n_c`` of each class.

    .. math::

        \text{inverse: } w_c \propto \frac{1}{n_c}, \qquad
        \text{inverse\_sqrt: } w_c \propto \frac{1}{\sqrt{n_c}}, \qquad
        \text{effective\_number: } w_c \propto \frac{1}{E_{n_c}}
            = \frac{1 - \beta}{1 - \beta^{n_c}}

    ``E_n = (1 - beta^n) / (1 - beta)`` is the effective number of samples of Cui et al.: the
    expected volume covered by ``n`` samples when each new one overlaps the previous ones with
    probability ``beta``. ``beta = 0`` gives uniform weights (every class has ``E_n = 1``) and
    ``beta -> 1`` gives inverse frequency (``E_n -> n``); Cui et al. use ``beta`` in
    {0.9, 0.99, 0.999, 0.9999}. ``1 - beta^n`` is computed as ``-expm1(n log beta)`` so that
    ``beta`` close to 1 keeps its precision.

    With ``normalize=True`` the weights are rescaled to sum to ``K`` (as Cui et al. do), so a
    balanced data set gets all ones.

    Args:
        counts: ``(K,)`` number of examples per class (list, NumPy array or tensor), finite and
            > 0; a class with count 0 raises, naming the class (drop it or give it a count).
        method: ``"inverse" | "inverse_sqrt" | "effective_number"``. Default ``"inverse"``.
        beta: ``beta`` in [0, 1) of the effective number. Default 0.999.
        normalize: rescale the weights to sum to ``K``. Default True.

    Returns:
        ``(K,)`` weights (computed in float64): in the dtype and on the device of ``counts``
        when it is a floating tensor, else in the default floating dtype (on the device of
        ``counts`` when it is a tensor).

    Example:
        >>> class_weights([900, 100], method="inverse")
        tensor([0.2000, 1.8000])
        >>> class_weights([900, 100], method="effective_number", beta=0.0)
        tensor([1., 1.])

    References:
        Cui et al., `Class-Balanced Loss Based on Effective Number of Samples
        <https://arxiv.org/abs/1901.05555>`_, 2019.
    """
    checks.check_choice("method", method, _METHODS)
    beta = checks.check_real("beta", beta, low=0.0, high=1.0, high_open=True)
    n = _as_counts(counts)
    if method == "inverse":
        w = 1.0 / n
    elif method == "inverse_sqrt":
        w = 1.0 / torch.sqrt(n)
    else:
        # 1 - beta^n = -expm1(n log beta); beta = 0 gives log 0 = -inf and 1 - 0 = 1 exactly.
        log_beta = math.log(beta) if beta > 0 else -math.inf
        w = (1.0 - beta) / -torch.expm1(n * log_beta)
    if normalize:
        w = w * (n.numel() / w.sum())
    if isinstance(counts, Tensor):
        dtype = counts.dtype if counts.is_floating_point() else torch.get_default_dtype()
        return w.to(dtype=dtype, device=counts.device)
    return w.to(torch.get_default_dtype())


def class_counts(labels: Tensor, num_classes: int, *, ignore_index: int = -100) -> Tensor:
    """Number of examples of each class among integer labels (``ignore_index`` not counted).

    Args:
        labels: class indices of any shape, in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: ``K >= 1``.
        ignore_index: label that is not counted. Default -100.

    Returns:
        ``(K,)`` int64 counts (classes that never occur get 0).

    Example:
        >>> import torch
        >>> class_counts(torch.tensor([0, 2, 2, -100]), 3)
        tensor([1, 0, 2])
    """
    labels = checks.check_tensor("labels", labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"Expected `labels` to have an integer dtype, but got {labels.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"Expected `num_classes` to be an int, but got {num_classes!r}")
    if num_classes < 1:
        raise checks.fail("num_classes", ">= 1", num_classes)
    if config.validate_args():
        _check_index_values(labels, num_classes, ignore_index)
    kept = labels[labels != ignore_index].reshape(-1).long()
    return torch.bincount(kept, minlength=num_classes)


def _as_counts(counts: object) -> Tensor:
    """``counts`` as a 1-D float64 CPU tensor, checked finite and > 0."""
    if isinstance(counts, Tensor):
        n = counts.detach().to(device="cpu", dtype=torch.float64)
    elif isinstance(counts, np.ndarray | Sequence) and not isinstance(counts, str | bytes):
        try:
            n = torch.as_tensor(np.asarray(counts, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"Expected `counts` to be numbers, but got {counts!r}") from None
    else:
        raise TypeError(
            "Expected `counts` to be a sequence, NumPy array or tensor of per-class counts, "
            f"but got {type(counts).__name__}"
        )
    if n.dim() != 1 or n.numel() == 0:
        raise checks.fail("counts", "to be one-dimensional with one count per class", counts)
    if not bool(torch.isfinite(n).all()):
        raise checks.fail("counts", "to be finite", counts)
    if bool((n <= 0).any()):
        c = int((n <= 0).nonzero()[0, 0])
        raise ValueError(
            f"Expected every class count in `counts` to be > 0, but class {c} has count "
            f"{n[c].item():g} (a class without examples has no defined weight: drop it or give "
            "it a count)"
        )
    return n
