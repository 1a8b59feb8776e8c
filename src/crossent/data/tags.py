"""Tag sequences: BIO / IOB2 tag names, entity spans, and checks of ``(n, T)`` tag tensors.

A tag is ``"O"`` (outside any entity) or ``PREFIX-TYPE`` with ``PREFIX`` one of ``B``
(begin), ``I`` (inside), ``E`` (end) or ``S`` (single); ``TYPE`` is the entity type
(``PER``, ``LOC``, ...). Token-classification data sets hold tag *ids*: ``y[i, t]`` indexes
the data set's ``class_names``, and ``-100`` (PyTorch's ``ignore_index``) marks padding.

Entity spans follow the ``conlleval`` / ``seqeval`` (default mode) chunk rules, so an ``I-``
tag after ``O`` or after another type starts an entity (IOB1 files read as their authors
meant) and :func:`entity_spans` gives what ``seqeval.metrics.sequence_labeling.get_entities``
gives for one sentence.

Example:
    >>> entity_spans(["B-PER", "I-PER", "O", "I-LOC"])
    [('PER', 0, 1), ('LOC', 3, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from crossent.core.checks import fail

IGNORE_INDEX = -100
PREFIXES = ("B", "I", "E", "S")


def parse_tag(tag: str) -> tuple[str, str]:
    """``(prefix, type)`` of one tag: ``("O", "")`` for ``"O"``, ``("B", "PER")`` for ``B-PER``.

    Raises:
        ValueError: for anything but ``"O"`` or ``PREFIX-TYPE`` with a prefix in
            :data:`PREFIXES` and a non-empty type.
    """
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in PREFIXES or not kind:
        raise ValueError(
            f"Expected a tag 'O' or PREFIX-TYPE with PREFIX in B, I, E, S (e.g. 'B-PER'), "
            f"but got {tag!r}"
        )
    return prefix, kind


def entity_types(names: Sequence[str]) -> list[str]:
    """The entity types of a tag set in order of first appearance (``O`` has none)."""
    return list(dict.fromkeys(parse_tag(n)[1] for n in names if n != "O"))


def _ends(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """Whether the chunk holding the previous tag ends before the current one (conlleval)."""
    (p, pt), (c, ct) = prev, cur
    if p in ("E", "S"):
        return True
    if p in ("B", "I") and c in ("B", "S", "O"):
        return True
    return p != "O" and pt != ct


def _starts(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """Whether the current tag starts a chunk (conlleval)."""
    (p, pt), (c, ct) = prev, cur
    if c in ("B", "S"):
        return True
    if c in ("E", "I") and p in ("E", "S", "O"):
        return True
    return c != "O" and pt != ct


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as ``(type, first, last)`` token positions (inclusive).

    The chunk rules of ``conlleval`` and ``seqeval``'s default mode (not ``strict``): any
    scheme of B/I/E/S prefixes reads, and an ``I-`` tag that follows ``O`` or another type
    begins an entity.

    Example:
        >>> entity_spans(["O", "B-ORG", "I-ORG", "B-ORG", "I-PER"])
        [('ORG', 1, 2), ('ORG', 3, 3), ('PER', 4, 4)]
    """
    spans: list[tuple[str, int, int]] = []
    prev = ("O", "")
    begin = 0
    for i, tag in enumerate([*tags, "O"]):
        cur = parse_tag(tag)
        if _ends(prev, cur):
            spans.append((prev[1], begin, i - 1))
        if _starts(prev, cur):
            begin = i
        prev = cur
    return spans


def check_tag_ids(
    name: str, tags: object, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Return ``tags`` after checking it is an integer ``(n, T)`` tensor of tag ids.

    Every entry is a tag id in ``[0, K)`` or ``ignore_index``.

    Raises:
        TypeError: not an integer tensor.
        ValueError: not two-dimensional, or a tag id outside the tag set (the first one is
            named with its position).
    """
    if not isinstance(tags, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor, but got {type(tags).__name__}")
    if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
        raise TypeError(f"Expected `{name}` to hold integer tag ids, but got {tags.dtype}")
    if tags.dim() != 2:
        raise fail(name, "to have shape (n, T): one row of tag ids per sentence", tags)
    bad = (tags != ignore_index) & ((tags < 0) | (tags >= num_classes))
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"Expected `{name}` to hold tag ids in [0, {num_classes}) or {ignore_index}, but "
            f"got {int(tags[row, col])} at sentence {row}, token {col}"
        )
    return tags


def check_sentences(name: str, tags: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise unless every row of ``(n, T)`` tags holds at least one token (not all padding)."""
    empty = ((tags != ignore_index).sum(dim=1) == 0).nonzero()
    if len(empty):
        raise ValueError(
            f"Expected every sentence of `{name}` to hold at least one token, but sentence "
            f"{int(empty[0, 0])} is empty (all {ignore_index})"
        )
