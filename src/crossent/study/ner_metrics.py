r"""Entity-level precision, recall and F1 of a tagger, and its token accuracy.

An entity is a ``(sentence, type, first token, last token)`` chunk read from BIO / IOB tags
with the ``conlleval`` rules (:func:`crossent.data.tags.entity_spans`); a predicted entity
counts as correct only when its type and both boundaries match a gold entity exactly. With
``TP`` the correct predicted entities, ``P`` all predicted ones and ``G`` all gold ones:

.. math::

    \text{precision} = TP / P, \quad \text{recall} = TP / G, \quad
    F_1 = 2\,\text{precision}\,\text{recall} / (\text{precision} + \text{recall})

(0 where a denominator is 0), over all entities ("micro") and per entity type. This is the
definition of ``conlleval`` and of ``seqeval``'s default mode, whose ``classification_report``
gives the same numbers on the same tags (the tests check it).

Positions where the gold tags are ``ignore_index`` (padding) are dropped from both sequences
before the chunks are read.

Example:
    >>> import torch
    >>> names = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    >>> gold = torch.tensor([[1, 2, 0, 3], [3, 4, 0, -100]])
    >>> pred = torch.tensor([[1, 2, 0, 0], [3, 4, 0, 0]])
    >>> scores = entity_scores(pred, gold, names)
    >>> scores["precision"], round(scores["recall"], 4), round(scores["f1"], 4)
    (1.0, 0.6667, 0.8)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from crossent.data.tags import IGNORE_INDEX, entity_spans, entity_types


def _entities(
    tags: list[list[int]], keep: list[list[bool]], names: Sequence[str]
) -> set[tuple[int, str, int, int]]:
    out = set()
    for row, (values, mask) in enumerate(zip(tags, keep, strict=True)):
        sequence = [names[v] for v, k in zip(values, mask, strict=True) if k]
        out.update((row, *span) for span in entity_spans(sequence))
    return out


def _prf(tp: int, predicted: int, gold: int) -> tuple[float, float, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / gold if gold else 0.0
    total = precision + recall
    return precision, recall, (2 * precision * recall / total if total else 0.0)


def entity_scores(
    pred: torch.Tensor,
    gold: torch.Tensor,
    names: Sequence[str],
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Micro and per-type entity precision, recall and F1 (see the module doc).

    Args:
        pred: ``(n, T)`` predicted tag ids.
        gold: ``(n, T)`` gold tag ids, ``ignore_index`` at padding.
        names: the tag names, indexed by tag id.
        ignore_index: the padding value of ``gold``.

    Returns:
        ``{"precision", "recall", "f1", "support", "per_type": {type: {"precision",
        "recall", "f1", "support"}}}``; ``support`` counts gold entities; every entity type
        of ``names`` is listed.
    """
    if pred.shape != gold.shape:
        raise ValueError(
            f"Expected `pred` to have the shape of `gold` {tuple(gold.shape)}, but got "
            f"{tuple(pred.shape)}"
        )
    keep = (gold != ignore_index).tolist()
    truth = _entities(gold.tolist(), keep, names)
    guess = _entities(pred.tolist(), keep, names)
    hits = truth & guess
    by_type = {kind: Counter(e[1] for e in group) for kind, group in (("t", truth), ("g", guess))}
    hit_type = Counter(e[1] for e in hits)
    per_type = {}
    for kind in entity_types(names):
        p, r, f = _prf(hit_type[kind], by_type["g"][kind], by_type["t"][kind])
        per_type[kind] = {"precision": p, "recall": r, "f1": f, "support": by_type["t"][kind]}
    p, r, f = _prf(len(hits), len(guess), len(truth))
    return {"precision": p, "recall": r, "f1": f, "support": len(truth), "per_type": per_type}


def token_accuracy(
    pred: torch.Tensor, gold: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> float:
    """Share of non-padding tokens whose predicted tag is the gold tag (0 with no tokens)."""
    keep = gold != ignore_index
    count = int(keep.sum())
    return float((pred[keep] == gold[keep]).sum()) / count if count else 0.0
