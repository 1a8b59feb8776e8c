"""Label noise for tag sequences: per-token flips and annotation-style noise on entity spans.

Four kinds, each at an exact rate and seeded by its own ``torch.Generator``:

* ``"symmetric"`` — per-token flips as in the per-sample studies: exactly
  ``round(rate * N)`` of the ``N`` non-padding tokens, each moved to a uniformly chosen other
  tag (:func:`crossent.data.inject_label_noise`). Flipped tags need not form valid BIO
  sequences (an ``I-`` after ``O`` reads as the start of an entity, as in ``conlleval``);
* ``"span-type"`` — exactly ``round(rate * S)`` of the ``S`` entity spans get another entity
  type, drawn uniformly, for the whole span (``B-PER I-PER`` -> ``B-ORG I-ORG``);
* ``"span-boundary"`` — exactly ``round(rate * S_b)`` of the ``S_b`` spans that can move get
  one boundary moved by one token: the start or the end, outwards into an adjacent ``O``
  token or inwards (spans of two or more tokens), one of the possible moves drawn uniformly.
  A span can move unless it is one token long with no ``O`` next to it;
* ``"span-missed"`` — exactly ``round(rate * S)`` of the spans become all ``O``.

Spans are read with :func:`crossent.data.tags.entity_spans` from the clean tags; padding
(``ignore_index``) is never touched and never becomes a neighbour. The span kinds need BIO /
IOB2 tag names (``O``, ``B-TYPE``, ``I-TYPE``) with a ``B-`` and an ``I-`` tag per type.

Example:
    >>> names = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    >>> tags = torch.tensor([[3, 4, 0, 1], [1, 2, 0, -100]])
    >>> noisy = inject_tag_noise(tags, 1.0, "span-missed", names, seed=0)
    >>> noisy.tolist()
    [[0, 0, 0, 0], [0, 0, 0, -100]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from crossent.core.checks import check_choice, check_real
from crossent.data.base import check_int
from crossent.data.noise import inject_label_noise
from crossent.data.tags import IGNORE_INDEX, check_tag_ids, entity_spans, parse_tag

TAG_NOISE_KINDS = ("symmetric", "span-type", "span-boundary", "span-missed")

#: One span: (row, positions of its tokens in the row, entity type).
_Span = tuple[int, list[int], str]


class _Tagger:
    """Tag ids of ``B-TYPE``, ``I-TYPE`` and ``O`` for a BIO tag set."""

    def __init__(self, names: Sequence[str]) -> None:
        ids = {name: i for i, name in enumerate(names)}
        if "O" not in ids:
            raise ValueError(f"Expected the tag names to include 'O', but got {tuple(names)}")
        self.outside = ids["O"]
        self.types = list(dict.fromkeys(parse_tag(n)[1] for n in names if n != "O"))
        for kind in self.types:
            for prefix in ("B", "I"):
                if f"{prefix}-{kind}" not in ids:
                    raise ValueError(
                        f"Expected BIO tag names with B- and I- tags for every type, but "
                        f"{prefix}-{kind} is missing from {tuple(names)}"
                    )
        self.ids = ids

    def tag(self, prefix: str, kind: str) -> int:
        return self.ids[f"{prefix}-{kind}"]

    def write(self, out: torch.Tensor, row: int, positions: list[int], kind: str) -> None:
        """Tag ``positions`` (consecutive tokens) of ``row`` as one entity of ``kind``."""
        out[row, positions[0]] = self.tag("B", kind)
        for p in positions[1:]:
            out[row, p] = self.tag("I", kind)


def _spans(tags: torch.Tensor, names: Sequence[str], ignore_index: int) -> list[_Span]:
    """Every entity span of every row, positions mapped back to the padded row."""
    out = []
    for row, values in enumerate(tags.tolist()):
        kept = [i for i, t in enumerate(values) if t != ignore_index]
        for kind, first, last in entity_spans([names[values[i]] for i in kept]):
            out.append((row, kept[first : last + 1], kind))
    return out


def _boundary_moves(out: torch.Tensor, span: _Span, tagger: _Tagger) -> list[str]:
    """The boundary moves possible for ``span`` on the current tags ``out``."""
    row, positions, _ = span
    width = out.shape[1]
    moves = []
    first, last = positions[0], positions[-1]
    if first > 0 and int(out[row, first - 1]) == tagger.outside:
        moves.append("extend-left")
    if last + 1 < width and int(out[row, last + 1]) == tagger.outside:
        moves.append("extend-right")
    if len(positions) > 1:
        moves += ["shrink-left", "shrink-right"]
    return moves


def _move(out: torch.Tensor, span: _Span, move: str, tagger: _Tagger) -> None:
    row, positions, kind = span
    first, last = positions[0], positions[-1]
    if move == "extend-left":
        positions = [first - 1, *positions]
    elif move == "extend-right":
        positions = [*positions, last + 1]
    elif move == "shrink-left":
        out[row, first] = tagger.outside
        positions = positions[1:]
    else:
        out[row, last] = tagger.outside
        positions = positions[:-1]
    tagger.write(out, row, positions, kind)


def _choose(count: int, total: int, generator: torch.Generator) -> list[int]:
    return torch.randperm(total, generator=generator)[:count].tolist()


def _span_noise(
    tags: torch.Tensor,
    rate: float,
    kind: str,
    names: Sequence[str],
    generator: torch.Generator,
    ignore_index: int,
) -> torch.Tensor:
    tagger = _Tagger(names)
    spans = _spans(tags, names, ignore_index)
    out = tags.clone()
    if kind == "span-boundary":
        return _shift_boundaries(out, spans, rate, tagger, generator)
    if kind == "span-type" and len(tagger.types) < 2 and rate > 0 and spans:
        raise ValueError(
            f"Expected at least 2 entity types for kind='span-type', but the tag set has "
            f"{tagger.types}"
        )
    for index in _choose(round(rate * len(spans)), len(spans), generator):
        row, positions, entity = spans[index]
        if kind == "span-missed":
            out[row, positions] = tagger.outside
            continue
        others = [t for t in tagger.types if t != entity]
        new = others[int(torch.randint(len(others), (1,), generator=generator))]
        tagger.write(out, row, positions, new)
    return out


def _shift_boundaries(
    out: torch.Tensor,
    spans: list[_Span],
    rate: float,
    tagger: _Tagger,
    generator: torch.Generator,
) -> torch.Tensor:
    """Move one boundary of exactly ``round(rate * S_b)`` movable spans (see module doc).

    Spans are visited in a random order; a span whose moves were all taken by an earlier
    move of a neighbouring span (both wanted the one ``O`` between them) is passed over, so
    the count stays exact.
    """
    movable = [s for s in spans if _boundary_moves(out, s, tagger)]
    count = round(rate * len(movable))
    done = 0
    for index in _choose(len(movable), len(movable), generator):
        if done == count:
            break
        moves = _boundary_moves(out, movable[index], tagger)
        if moves:
            pick = int(torch.randint(len(moves), (1,), generator=generator))
            _move(out, movable[index], moves[pick], tagger)
            done += 1
    if done < count:  # pragma: no cover - needs every remaining span blocked by a neighbour
        raise ValueError(f"Could move only {done} of {count} span boundaries for rate={rate}")
    return out


def inject_tag_noise(
    tags: torch.Tensor,
    rate: float,
    kind: str,
    names: Sequence[str],
    seed: int,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Corrupt ``(n, T)`` tag ids with per-token or span noise (see the module doc).

    Args:
        tags: int64 ``(n, T)`` tag ids in ``[0, K)``, ``ignore_index`` at padding.
        rate: in ``[0, 1]``: the share of tokens (``"symmetric"``) or of entity spans (the
            span kinds) that change.
        kind: one of :data:`TAG_NOISE_KINDS`.
        names: the ``K`` tag names (``Dataset.class_names``).
        seed: seed of the generator that draws the noise (``>= 0``).
        ignore_index: the padding value (default -100).

    Returns:
        The noisy tags: a new tensor of the shape and dtype of ``tags``.

    Raises:
        TypeError, ValueError: one line naming the argument, e.g. tags that are not
            ``(n, T)``, a tag id outside the tag set, an unknown kind.
    """
    check_choice("kind", kind, TAG_NOISE_KINDS)
    rate = check_real("rate", rate, low=0.0, high=1.0)
    seed = check_int("seed", seed, 0)
    tags = check_tag_ids("tags", tags, len(names), ignore_index)
    if kind == "symmetric":
        noisy, _ = inject_label_noise(tags, rate, kind, len(names), seed, ignore_index=ignore_index)
        return noisy
    generator = torch.Generator().manual_seed(seed)
    return _span_noise(tags.cpu().long(), rate, kind, names, generator, ignore_index).to(tags)
