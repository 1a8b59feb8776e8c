"""Losses over tokens: any registry loss on the non-padding tokens, and span-aware smoothing.

A tagger gives ``(B, T, K)`` logits and the tags are ``(B, T)`` with -100 at padding.
:class:`TokenLoss` keeps the ``M`` non-padding tokens and calls the registry loss on
``(M, K)`` logits, so every loss works, with or without its own ``ignore_index`` support,
and ``reduction="mean"`` averages over tokens (CoNLL-style training).

``smoothing = "span"`` with ``label_smoothing = s`` in a loss's parameters is the engine's
span-aware smoothing (:mod:`crossent.core.span`): it reads the whole ``(B, T)`` tag sequences,
so the loss gets the ``(B, K, T)`` logits and the tags (padding is ``ignore_index``), and CE,
GCE, SGCE and every engine loss train against the span-smoothed targets.

Example:
    >>> import torch
    >>> loss = make_token_loss({"name": "sgce", "params": {"q": 0.7, "label_smoothing": 0.1,
    ...     "smoothing": "span"}, "class_weights": None, "sampler": "none"}, num_classes=3)
    >>> logits, tags = torch.zeros(2, 4, 3), torch.tensor([[0, 1, 2, 0], [1, 0, -100, -100]])
    >>> round(float(loss(logits, tags)), 4)
    0.7665
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from crossent.core.span import MAX_SPAN_SMOOTHING, span_smoothed_targets
from crossent.data.tags import IGNORE_INDEX
from crossent.functional.cross_entropy import minimum_over_logits

SPAN = "span"


def span_smoothing(params: dict[str, Any]) -> float | None:
    """``s`` when the loss parameters ask for span smoothing, else ``None``."""
    if params.get("smoothing") != SPAN:
        return None
    value = params.get("label_smoothing", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Expected `label_smoothing` to be a number, but got {value!r}")
    if not 0.0 <= value <= MAX_SPAN_SMOOTHING:
        raise ValueError(
            f"Expected `label_smoothing` in [0, {MAX_SPAN_SMOOTHING}] with smoothing='span', "
            f"but got {value!r}"
        )
    return float(value)


class TokenLoss(nn.Module):
    """A registry loss over the non-padding tokens of ``(B, T, K)`` logits (module doc)."""

    def __init__(
        self,
        loss_fn: nn.Module,
        num_classes: int,
        span: float | None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.num_classes = num_classes
        self.span = span
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Mean loss over the tokens whose tag is not ``ignore_index``."""
        if self.span:  # the engine's span smoothing reads the sequence: logits (B, K, T)
            return self.loss_fn(logits.transpose(1, 2), tags)
        keep = tags != self.ignore_index
        return self.loss_fn(logits[keep], tags[keep])


def make_token_loss(loss: dict[str, Any], num_classes: int) -> TokenLoss:
    """The :class:`TokenLoss` of a run config's ``loss`` section.

    Raises:
        ValueError: class weights or a sampler (per-sample options a tagging run does not
            take), or span smoothing outside ``[0, 1/2]``.
    """
    from crossent.registry import get_loss

    if loss.get("class_weights") is not None:
        raise ValueError("Expected no class_weights for a tagging study (tokens), but got some")
    if loss.get("sampler", "none") != "none":
        raise ValueError(
            f"Expected sampler 'none' for a tagging study, but got {loss['sampler']!r}"
        )
    span = span_smoothing(loss["params"])
    loss_fn = get_loss(loss["name"], **loss["params"])
    return TokenLoss(loss_fn, num_classes, span)


def span_minimum_loss(token_loss: TokenLoss, tags: torch.Tensor) -> float | None:
    """The lowest mean loss reachable on ``tags`` under span smoothing, or ``None`` (s = 0).

    Each token's target is one of a few distributions up to a permutation of the tags (inside,
    one differing neighbour, two); a permutation-invariant loss reaches the same minimum on
    each, so the minimum of each distinct sorted row is found once (L-BFGS on one row of
    logits; for cross-entropy it is the entropy, :mod:`crossent.core.span`) and weighted by
    its count.
    """
    if not token_loss.span:
        return None
    target = span_smoothed_targets(
        tags, token_loss.num_classes, token_loss.span, dtype=torch.float64
    )[tags != IGNORE_INDEX]
    rows, counts = torch.unique(
        target.sort(dim=1, descending=True).values, dim=0, return_counts=True
    )
    # the loss against each target row as it stands: the same module without its smoothing
    plain = copy.copy(token_loss.loss_fn)
    plain.label_smoothing, plain.smoothing = 0.0, "uniform"
    total = sum(
        minimum_over_logits(plain, row.unsqueeze(0), (1, row.shape[0])) * int(c)
        for row, c in zip(rows, counts, strict=True)
    )
    return total / int(counts.sum())
