"""Classification metrics of a run, from predictions on the clean test split.

All functions take class-index tensors ``pred`` and ``target`` of shape ``(N,)`` (int64) and
the number of classes ``K``; every class counts, also one absent from the split.

* confusion matrix ``C[i, j]`` = number of examples of true class ``i`` predicted as ``j``;
* per-class recall ``C[c, c] / sum_j C[c, j]`` (0 for a class with no examples);
* macro-F1 ``mean_c 2 TP_c / (2 TP_c + FP_c + FN_c)`` (0 where the denominator is 0), as
  ``sklearn.metrics.f1_score(average="macro", labels=range(K), zero_division=0)``.

Example:
    >>> import torch
    >>> pred, target = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])
    >>> confusion_matrix(pred, target, 2).tolist()
    [[1, 1], [0, 1]]
    >>> round(macro_f1(pred, target, 2), 4)
    0.6667
"""

from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` int64 counts: rows are true classes, columns predicted classes."""
    flat = target.long() * num_classes + pred.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Recall of each class, ``C[c, c] / sum_j C[c, j]``; 0 for a class with no examples."""
    cm = confusion_matrix(pred, target, num_classes).double()
    support = cm.sum(dim=1)
    recall = torch.where(support > 0, cm.diagonal() / support.clamp_min(1), 0.0)
    return recall.tolist()


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean over the ``K`` classes of ``2 TP / (2 TP + FP + FN)``."""
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diagonal()
    denominator = cm.sum(dim=0) + cm.sum(dim=1)  # = 2 TP + FP + FN
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), 0.0)
    return float(f1.mean())


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of examples with ``pred == target``."""
    return float((pred == target).double().mean())


def precision_recall(scores: torch.Tensor, target: torch.Tensor) -> dict[str, list[float] | float]:
    """Precision-recall curve and average precision of a binary problem (class 1 positive).

    Args:
        scores: ``(N,)`` probability of class 1.
        target: ``(N,)`` labels in ``{0, 1}``.

    Returns:
        ``{"precision": [...], "recall": [...], "average_precision": float}`` from
        :func:`sklearn.metrics.precision_recall_curve` and ``average_precision_score``.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, s = target.numpy(), scores.double().numpy()
    precision, recall, _ = precision_recall_curve(y, s)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "average_precision": float(average_precision_score(y, s)),
    }
