"""The float64 reference of every registry name at its documented defaults. Never imports crossent.

``REFERENCES[name](*args)`` computes the loss that ``get_loss(name)(*args)`` must give, from
the naive formulas of :mod:`tests.reference` and :mod:`tests.reference_overlap`, with the
module's default hyper-parameters written out here (so a changed default fails too).
``inputs(kind)`` builds float64 arguments of the kind a registry name takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from tests import reference as R
from tests import reference_overlap as O

A = math.log(1e-4)  # reverse CE's default: the authors' clamp of the label at 1e-4


def _per_class(elem: Callable, **kw: object) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda z, t: R.per_class_loss(z, t, elem, **kw)


def _binary_lq(q: float, eps: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    # "others" smoothing with two outcomes: eps of the mass moves to the other outcome
    return lambda z, y: R.binary_lq(z, y * (1 - eps) + (1 - y) * eps, q).mean()


def _asl(z: Tensor, y: Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05):
    """Ridnik et al. 2021, written from the paper: positives ``(1-p)^g+ log p``, negatives
    ``p_m^g- log(1 - p_m)`` with ``p_m = max(p - clip, 0)``; the mean over elements."""
    p = 1 / (1 + torch.exp(-z.double()))
    p_m = torch.clamp(p - clip, min=0)
    y = y.double()
    pos = -y * (1 - p) ** gamma_pos * torch.log(p)
    neg = -(1 - y) * p_m**gamma_neg * torch.log(1 - p_m)
    return (pos + neg).mean()


def _apl(z: Tensor, t: Tensor) -> Tensor:
    # active NCE + passive RCE, alpha = beta = 1 (Ma et al. 2020)
    return R.normalized_loss(z, t) + R.per_class_loss(z, t, R.rce_elem(A))


REFERENCES: dict[str, Callable[..., Tensor]] = {
    "ce": lambda z, t: R.cross_entropy(z, t),
    "bce": lambda z, y: R.binary_cross_entropy_with_logits(z, y).mean(),
    "nll": lambda logp, t: R.nll_loss(logp, t),
    "focal": _per_class(R.focal_elem(2.0)),
    "sigmoid_focal": lambda z, y: R.torchvision_sigmoid_focal_loss(z, y, 0.25, 2, "mean"),
    "gce": _per_class(R.lq_elem(0.7)),
    "binary_gce": _binary_lq(0.7),
    "sgce": _per_class(R.lq_elem(0.7), label_smoothing=0.1, smoothing="others"),
    "binary_sgce": _binary_lq(0.7, eps=0.1),
    "mae": _per_class(R.mae_elem),
    "unhinged": _per_class(R.unhinged_elem),
    "rce": _per_class(R.rce_elem(A)),
    "sce": _per_class(R.sce_elem(0.1, 1.0, A)),
    "nce": lambda z, t: R.normalized_loss(z, t),
    "nfl": lambda z, t: R.normalized_loss(z, t, gamma=0.5),
    "apl": _apl,
    "poly1": _per_class(R.poly1_elem(1.0)),
    "erce": _per_class(R.confidence_penalty_elem(0.1)),
    "brier": _per_class(R.brier_elem),
    "asl": _asl,
    "distill": lambda s, t: R.distillation(s, t).mean(),
    "dice": lambda z, t: (1 - O.dice_coefficient(z, t, "multiclass")).mean(),
    "tversky": lambda z, t: (1 - O.tversky_index(z, t, 0.3, 0.7, "multiclass")).mean(),
    "focal_tversky": lambda z, t: (
        (1 - O.tversky_index(z, t, 0.3, 0.7, "multiclass")) ** 0.75
    ).mean(),
    "unified_focal": lambda z, t: O.unified_focal(z, t, 0.5, 0.6, 0.5, True, "multiclass"),
}


def inputs(kind: str, seed: int = 0) -> tuple[tuple[Tensor, ...], Tensor]:
    """float64 arguments of the kind a loss takes, and the tensor that requires grad."""
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    if kind == "multiclass":
        z = torch.randn(6, 5, generator=g, dtype=d).requires_grad_()
        return (z, torch.randint(0, 5, (6,), generator=g)), z
    if kind == "binary":
        z = (2 * torch.randn(6, 3, generator=g, dtype=d)).requires_grad_()
        return (z, (torch.rand(6, 3, generator=g) < 0.5).to(d)), z
    if kind == "log_probs":
        z = torch.randn(6, 5, generator=g, dtype=d)
        logp = torch.log_softmax(z, 1).requires_grad_()
        return (logp, torch.randint(0, 5, (6,), generator=g)), logp
    if kind == "distillation":
        z = torch.randn(6, 5, generator=g, dtype=d).requires_grad_()
        return (z, torch.randn(6, 5, generator=g, dtype=d)), z
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=d).requires_grad_()
    return (z, torch.randint(0, 3, (2, 4, 4), generator=g)), z
