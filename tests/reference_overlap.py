"""Deliberately naive float64 references for the overlap losses. Never imports crossent.

Probabilities are formed from their definitions (``exp(z) / sum exp(z)``, ``1 / (1 + e^-z)``),
statistics are summed class by class in Python loops, and the unified focal loss is also
transliterated from the authors' Keras code (github.com/mlyg/unified-focal-loss,
``loss_functions.py``) to check the reading of the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor


def softmax(z: Tensor) -> Tensor:
    """Softmax over dim 1 from the definition, in float64."""
    e = torch.exp(z.double() - z.double().amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def sigmoid(z: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-z.double()))


def class_sets(logits: Tensor, target: Tensor, mode: str, ignore_index: int = -100):
    """Lists ``p[c]``, ``g[c]``, ``m[c]`` of ``(N, S)`` tensors: probability, target, kept mask.

    ``multiclass``: one entry per class; ``binary``: one entry (the foreground);
    ``multilabel``: one entry per channel.
    """
    n = logits.shape[0]
    if mode == "multiclass":
        k = logits.shape[1]
        prob = softmax(logits).reshape(n, k, -1)
        if target.is_floating_point():
            tgt = target.double().reshape(n, k, -1)
            keep = torch.ones(n, prob.shape[2], dtype=torch.float64)
            return [prob[:, c] for c in range(k)], [tgt[:, c] for c in range(k)], [keep] * k
        t = target.reshape(n, -1)
        keep = (t != ignore_index).double()
        gs = [(t == c).double() for c in range(k)]
        return [prob[:, c] * keep for c in range(k)], gs, [keep] * k
    if mode == "binary":
        prob = sigmoid(logits).reshape(n, 1, -1)
        tgt = target.double().reshape(n, 1, -1)
    else:
        prob = sigmoid(logits).reshape(n, logits.shape[1], -1)
        tgt = target.double().reshape(n, logits.shape[1], -1)
    ps, gs, ms = [], [], []
    for c in range(prob.shape[1]):
        keep = (tgt[:, c] != ignore_index).double()
        ps.append(prob[:, c] * keep)
        gs.append(torch.where(keep > 0, tgt[:, c], 0.0))
        ms.append(keep)
    return ps, gs, ms


def _sum(x: Tensor, per_image: bool) -> Tensor:
    return x.sum(1) if per_image else x.sum()


def tversky_index(logits, target, alpha, beta, mode, smooth=1.0, per_image=False, ignore=-100):
    """Per-class Tversky index, ``(C,)`` or ``(N, C)``."""
    ps, gs, ms = class_sets(logits, target, mode, ignore)
    out = []
    for p, g, m in zip(ps, gs, ms, strict=True):
        tp = _sum(p * g, per_image)
        fp = _sum(p * (1 - g) * m, per_image)
        fn = _sum((1 - p) * g * m, per_image)
        out.append((tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return torch.stack(out, -1)


def dice_coefficient(logits, target, mode, smooth=1.0, per_image=False, ignore=-100):
    """Per-class Dice written as ``(2 TP + 2s) / (|P| + |G| + 2s)``, not through Tversky."""
    ps, gs, _ = class_sets(logits, target, mode, ignore)
    out = []
    for p, g in zip(ps, gs, strict=True):
        inter = _sum(p * g, per_image)
        total = _sum(p, per_image) + _sum(g, per_image)
        out.append((2 * inter + 2 * smooth) / (total + 2 * smooth))
    return torch.stack(out, -1)


def jaccard_index(logits, target, mode, smooth=1.0):
    """Soft IoU ``(TP + s) / (|P| + |G| - TP + s)`` per class."""
    ps, gs, _ = class_sets(logits, target, mode)
    out = []
    for p, g in zip(ps, gs, strict=True):
        inter = (p * g).sum()
        out.append((inter + smooth) / (p.sum() + g.sum() - inter + smooth))
    return torch.stack(out)


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def unified_focal(
    logits, target, weight, delta, gamma, asymmetric, mode, smooth=1.0, per_image=False
):
    """Unified focal loss from the paper's formulas: ``weight * L_F + (1 - weight) * L_FT``.

    Two-class problems for the sigmoid modes (background ``1 - p``, foreground ``p``), class 0
    the background for ``multiclass``. Per image: ``(N,)``; pooled: scalar.
    """
    problems = []
    if mode == "multiclass":
        prob = softmax(logits).reshape(logits.shape[0], logits.shape[1], -1)
        t = target.reshape(logits.shape[0], -1)
        onehot = torch.stack([(t == c).double() for c in range(logits.shape[1])], 1)
        problems.append((prob, onehot))
    else:
        z = logits.double().reshape(logits.shape[0], 1 if mode == "binary" else logits.shape[1], -1)
        y = target.double().reshape(z.shape)
        for c in range(z.shape[1]):
            p1 = sigmoid(z[:, c])
            problems.append((torch.stack([1 - p1, p1], 1), torch.stack([1 - y[:, c], y[:, c]], 1)))
    losses = []
    for prob, g in problems:
        k = prob.shape[1]
        ce_terms, ft_terms = [], []
        for c in range(k):
            w = (1 - delta) if c == 0 else delta
            mod = (1 - prob[:, c]) ** gamma if (c == 0 or not asymmetric) else 1.0
            ce_terms.append(-w * mod * g[:, c] * torch.log(prob[:, c]))
            tp = _sum(prob[:, c] * g[:, c], per_image)
            fn = _sum((1 - prob[:, c]) * g[:, c], per_image)
            fp = _sum(prob[:, c] * (1 - g[:, c]), per_image)
            mti = (tp + smooth) / (tp + delta * fn + (1 - delta) * fp + smooth)
            if c == 0 and asymmetric:
                ft_terms.append(1 - mti)
            else:
                ft_terms.append((1 - mti) ** (1 - gamma))
        ce = sum(ce_terms)
        focal = ce.mean(1) if per_image else ce.mean()
        tversky = sum(ft_terms) / k
        losses.append(weight * focal + (1 - weight) * tversky)
    return sum(losses) / len(losses)


def unified_focal_authors_code(y_true, y_pred, weight=0.5, delta=0.6, gamma=0.5, asymmetric=True):
    """Transliteration of ``asym_unified_focal_loss`` / ``sym_unified_focal_loss`` (Keras).

    ``y_true``, ``y_pred``: ``(N, H, W, 2)`` one-hot targets and softmax probabilities. As in
    the code: ``y_pred`` clipped to [1e-7, 1 - 1e-7], Tversky index per image with smoothing
    1e-7, ``weight`` on the Tversky part.
    """
    eps = 1e-7
    y_pred = y_pred.double().clamp(eps, 1 - eps)
    y_true = y_true.double()
    # focal part (asymmetric_focal_loss / symmetric_focal_loss)
    cross_entropy = -y_true * torch.log(y_pred)
    back_ce = (1 - delta) * torch.pow(1 - y_pred[..., 0], gamma) * cross_entropy[..., 0]
    if asymmetric:
        fore_ce = delta * cross_entropy[..., 1]
    else:
        fore_ce = delta * torch.pow(1 - y_pred[..., 1], gamma) * cross_entropy[..., 1]
    focal = torch.stack([back_ce, fore_ce], -1).sum(-1).mean()
    # focal Tversky part (asymmetric_focal_tversky_loss / symmetric_focal_tversky_loss)
    axis = (1, 2)
    tp = (y_true * y_pred).sum(axis)
    fn = (y_true * (1 - y_pred)).sum(axis)
    fp = ((1 - y_true) * y_pred).sum(axis)
    dice_class = (tp + eps) / (tp + delta * fn + (1 - delta) * fp + eps)
    if asymmetric:
        back_dice = 1 - dice_class[:, 0]
    else:
        back_dice = (1 - dice_class[:, 0]) * torch.pow(1 - dice_class[:, 0], -gamma)
    fore_dice = (1 - dice_class[:, 1]) * torch.pow(1 - dice_class[:, 1], -gamma)
    tversky = torch.stack([back_dice, fore_dice], -1).mean()
    return weight * tversky + (1 - weight) * focal
