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
