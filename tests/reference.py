"""Deliberately naive float64 reference formulas. Never imports crossent.

Each function writes its loss the plain textbook way (softmax, log, gather, sums) in
float64, so tests compare the library against an independent computation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def smoothed_onehot(target: Tensor, k: int, eps: float, smoothing: str) -> Tensor:
    """Target distribution ``(N, K)`` from class indices ``(N,)``."""
    p = torch.zeros(target.shape[0], k, dtype=torch.float64)
    for i, t in enumerate(target.tolist()):
        for j in range(k):
            if smoothing == "uniform":
                p[i, j] = (1 - eps) * (j == t) + eps / k
            else:
                p[i, j] = (1 - eps) if j == t else eps / (k - 1)
    return p


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``(N, K)`` logits, written row by row from the definition."""
    z = logits.double()
    n, k = z.shape
    w = torch.ones(k, dtype=torch.float64) if weight is None else weight.double()
    losses, denom = [], 0.0
    soft = target.is_floating_point()
    for i in range(n):
        logp = z[i] - torch.log(torch.exp(z[i] - z[i].max()).sum()) - z[i].max()
        if soft:
            p = target[i].double() * (1 - label_smoothing) + label_smoothing / k
            valid, wt = True, 1.0
        else:
            t = int(target[i])
            valid = t != ignore_index
            if not valid:
                losses.append(torch.zeros((), dtype=torch.float64))
                continue
            p = smoothed_onehot(torch.tensor([t]), k, label_smoothing, smoothing)[0]
            wt = float(w[t])
        loss = -(w * p * logp).sum()
        if z_loss:
            lse = torch.logsumexp(z[i], 0)
            loss = loss + z_loss * lse**2
        losses.append(loss)
        denom += wt if valid else 0.0
    out = torch.stack(losses) if losses else torch.zeros(0, dtype=torch.float64)
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    if soft:
        return out.sum() / n
    return out.sum() / denom if denom else out.sum() * 0


def binary_cross_entropy_with_logits(
    logits: Tensor, target: Tensor, weight: Tensor | None = None, pos_weight: Tensor | None = None
) -> Tensor:
    """Per-element BCE ``-w [pw y log sigma(z) + (1-y) log(1 - sigma(z))]`` (no reduction)."""
    z, y = logits.double(), target.double()
    sig = 1 / (1 + torch.exp(-z))
    pw = 1.0 if pos_weight is None else pos_weight.double()
    w = 1.0 if weight is None else weight.double()
    return -w * (pw * y * torch.log(sig) + (1 - y) * torch.log(1 - sig))


def entropy(p: list[float]) -> float:
    """Shannon entropy in nats."""
    return -sum(x * math.log(x) for x in p if x > 0)


# ---------------------------------------------------------------------------------------
# The loss family (focal, generalized CE, robust, regularized, NLL, distillation).
# Every formula takes probabilities p = softmax(z) and the target distribution P, (N, K).
# ---------------------------------------------------------------------------------------


def softmax(logits: Tensor) -> Tensor:
    """Row-wise softmax of ``(N, K)`` logits in float64, written out."""
    z = logits.double()
    e = torch.exp(z - z.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def target_matrix(
    target: Tensor, k: int, label_smoothing: float = 0.0, smoothing: str = "uniform"
) -> Tensor:
    """``(N, K)`` target distribution from class indices ``(N,)`` or probabilities ``(N, K)``
    (rows of ignored indices are left as zeros; pass ``ignore_index`` to the callers)."""
    if target.is_floating_point():
        return target.double() * (1 - label_smoothing) + label_smoothing / k
    rows = []
    for t in target.tolist():
        if 0 <= t < k:
            rows.append(smoothed_onehot(torch.tensor([t]), k, label_smoothing, smoothing)[0])
        else:
            rows.append(torch.zeros(k, dtype=torch.float64))
    return torch.stack(rows)


def per_class_loss(
    logits: Tensor,
    target: Tensor,
    elementwise,
    weight: Tensor | None = None,
    class_scale: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
) -> Tensor:
    """``sum_k w_k a_k elementwise(p_k, P_k)`` per row with PyTorch's reductions: ``mean``
    divides by the summed target weights of non-ignored rows (row count for probabilities);
    ``class_scale`` (focal's alpha) multiplies without entering the denominator."""
    n, k = logits.shape
    p = softmax(logits)
    big_p = target_matrix(target, k, label_smoothing, smoothing)
    w = torch.ones(k, dtype=torch.float64) if weight is None else weight.double()
    a = torch.ones(k, dtype=torch.float64) if class_scale is None else class_scale.double()
    per = (w * a * elementwise(p, big_p)).sum(dim=1)
    if target.is_floating_point():
        valid = torch.ones(n, dtype=torch.bool)
        denom = float(n)
    else:
        valid = target != ignore_index
        denom = float(sum(w[t] for t in target[valid].tolist()))
    per = torch.where(valid, per, torch.zeros_like(per))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / denom if denom else per.sum() * 0


def focal_elem(gamma: float | str):
    """``-P (1 - p)^gamma log p``; ``"flsd-53"``: gamma 5 where ``p < 0.2``, else 3."""

    def f(p: Tensor, big_p: Tensor) -> Tensor:
        if gamma == "flsd-53":
            g = torch.where(p < 0.2, torch.full_like(p, 5.0), torch.full_like(p, 3.0))
        else:
            g = gamma
        return -big_p * (1 - p) ** g * torch.log(p)

    return f


def lq_elem(q: float, truncate: float | None = None):
    """``P (1 - max(p, k)^q) / q``; ``-P log max(p, k)`` at ``q = 0``."""

    def f(p: Tensor, big_p: Tensor) -> Tensor:
        pk = p if truncate is None else torch.clamp(p, min=truncate)
        if q == 0:
            return -big_p * torch.log(pk)
        return big_p * (1 - pk**q) / q

    return f


def mae_elem(p: Tensor, big_p: Tensor) -> Tensor:
    return torch.abs(big_p - p)


def unhinged_elem(p: Tensor, big_p: Tensor) -> Tensor:
    return big_p * (1 - p)


def rce_elem(A: float):
    """``-p log(max(P, e^A))``: the authors' clamp of the label at ``e^A``."""

    def f(p: Tensor, big_p: Tensor) -> Tensor:
        return -p * torch.log(torch.clamp(big_p, min=math.exp(A)))

    return f


def sce_elem(alpha: float, beta: float, A: float):
    def f(p: Tensor, big_p: Tensor) -> Tensor:
        return alpha * (-big_p * torch.log(p)) + beta * rce_elem(A)(p, big_p)

    return f


def poly1_elem(epsilon: float):
    def f(p: Tensor, big_p: Tensor) -> Tensor:
        return -big_p * torch.log(p) + epsilon * big_p * (1 - p)

    return f


def confidence_penalty_elem(beta: float):
    """``-P log p + beta p log p`` (its row sum is ``CE - beta H(p)``)."""

    def f(p: Tensor, big_p: Tensor) -> Tensor:
        return -big_p * torch.log(p) + beta * p * torch.log(p)

    return f


def brier_elem(p: Tensor, big_p: Tensor) -> Tensor:
    return (p - big_p) ** 2


def focal_snippet(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """The focal-loss article's snippet, verbatim in spirit."""
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    p_t = torch.exp(-ce)
    return ((1 - p_t) ** gamma * ce).mean()


def torchvision_sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"
) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py), same formula."""
    p = torch.sigmoid(inputs)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        inputs, targets, reduction="none"
    )
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def binary_lq(logits: Tensor, target: Tensor, q: float) -> Tensor:
    """Per-element sigmoid Lq: ``y (1 - p^q)/q + (1 - y)(1 - (1-p)^q)/q``."""
    p = 1 / (1 + torch.exp(-logits.double()))
    y = target.double()
    if q == 0:
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    return y * (1 - p**q) / q + (1 - y) * (1 - (1 - p) ** q) / q


def normalized_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 0.0,
    ignore_index: int = -100,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
) -> Tensor:
    """Ma et al.'s normalized focal loss (NCE at ``gamma = 0``), PyTorch's (weighted) mean:
    ``sum_k w_k P_k FL(p_k) / sum_j FL(p_j)`` with ``FL(p) = -(1 - p)^gamma log p``."""
    p = softmax(logits)
    k = p.shape[1]
    w = torch.ones(k, dtype=torch.float64) if weight is None else weight.double()
    fl = -((1 - p) ** gamma) * torch.log(p)
    big_p = target_matrix(target, k, label_smoothing, smoothing)
    per = (w * big_p * fl).sum(dim=1) / fl.sum(dim=1)
    if target.is_floating_point():
        return per.mean()
    valid = target != ignore_index
    return per[valid].sum() / w[target[valid]].sum()


def nll_loss(
    logp: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """``-w_t x_t`` row by row, PyTorch's weighted mean."""
    n, k = logp.shape
    w = torch.ones(k, dtype=torch.float64) if weight is None else weight.double()
    losses, denom = [], 0.0
    for i, t in enumerate(target.tolist()):
        if t == ignore_index:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        losses.append(-w[t] * logp[i, t].double())
        denom += float(w[t])
    out = torch.stack(losses)
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    return out.sum() / denom


def distillation(
    student: Tensor,
    teacher: Tensor,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    mix: float = 0.5,
) -> Tensor:
    """Per-row divergence between ``softmax(z/T)`` distributions, times ``T^2``."""
    ps = softmax(student.double() / temperature)
    pt = softmax(teacher.double() / temperature)

    def kl(a: Tensor, b: Tensor) -> Tensor:
        return (a * (torch.log(a) - torch.log(b))).sum(dim=1)

    if divergence == "forward_kl":
        d = kl(pt, ps)
    elif divergence == "reverse_kl":
        d = kl(ps, pt)
    elif divergence == "jsd":
        m = (pt + ps) / 2
        d = 0.5 * (kl(pt, m) + kl(ps, m))
    else:
        d = mix * kl(pt, ps) + (1 - mix) * kl(ps, pt)
    return d * temperature**2


def row_entropy(logits: Tensor) -> Tensor:
    """``H(softmax(z))`` per row."""
    p = softmax(logits)
    return -(p * torch.log(p)).sum(dim=1)
