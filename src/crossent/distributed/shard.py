"""Where each rank's columns sit in the vocabulary: one all-gather of small integers per call.

Every vocabulary-parallel call starts with :func:`describe`: each rank contributes its width,
its ``vocab_start`` (or ``-1`` for the default), whether its own argument checks failed, and
a few facts that every rank must agree on (the number of rows, the kind of target, ...). One
all-gather of ``world x F`` integers gives every rank the same table, so every rank reaches
the same verdict: the same error is raised on all of them instead of one rank raising while
the others wait in the next collective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from crossent.distributed.collectives import all_gather


@dataclass(frozen=True)
class Shard:
    """This rank's place in the vocabulary, and the facts every rank shared.

    Attributes:
        group: the process group.
        rank: this process's rank in ``group``.
        world: the group's size.
        start: the first global class index held here.
        width: the number of classes held here (``K_local``, may be 0).
        num_classes: ``K``, the sum of every rank's width.
        max_width: the largest width (it sets the chunk rows, the same on every rank).
        facts: every rank's value of each fact, in rank order.
    """

    group: dist.ProcessGroup
    rank: int
    world: int
    start: int
    width: int
    num_classes: int
    max_width: int
    facts: dict[str, tuple[int, ...]]

    @property
    def stop(self) -> int:
        """One past the last global class index held here."""
        return self.start + self.width


def collective_device(group: dist.ProcessGroup, hint: torch.device) -> torch.device:
    """Where small bookkeeping tensors live: CUDA under NCCL, the host otherwise."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return hint if hint.type == "cpu" else torch.device("cpu")


def check_vocab_start(vocab_start: object) -> int:
    """``None`` -> -1 (the default: prefix sums of the widths), else an int >= 0."""
    if vocab_start is None:
        return -1
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, int):
        raise TypeError(f"Expected `vocab_start` to be an int or None, but got {vocab_start!r}")
    if vocab_start < 0:
        raise ValueError(f"Expected `vocab_start` >= 0, but got {vocab_start}")
    return vocab_start


def describe(
    group: dist.ProcessGroup,
    width: int,
    vocab_start: int,
    facts: dict[str, int],
    error: Exception | None,
    *,
    agree: tuple[str, ...] = (),
    device: torch.device | None = None,
) -> Shard:
    """Gather every rank's layout and facts; raise on every rank if any rank is wrong.

    Args:
        group: the process group.
        width: this rank's number of classes.
        vocab_start: this rank's first class (from :func:`check_vocab_start`; -1 = default).
        facts: further integers to share (e.g. ``rows``, ``target_kind``).
        error: the exception this rank's own argument checks raised, or ``None``.
        agree: the facts that must be equal on every rank.
        device: where the gathered tensor lives (:func:`collective_device`).

    Raises:
        The rank's own ``error`` on that rank, and a ``RuntimeError`` naming the failing
        ranks on the others; ``ValueError`` on every rank for shards that do not tile
        ``[0, K)`` or a fact that differs between ranks.
    """
    names = ("vocab_start", "width", "error", *facts)
    local = [vocab_start, width, int(error is not None), *facts.values()]
    where = device or torch.device("cpu")
    table = all_gather(torch.tensor(local, dtype=torch.int64, device=where), group).tolist()
    columns = {name: tuple(row[i] for row in table) for i, name in enumerate(names)}
    rank = dist.get_rank(group)
    failed = [r for r, flag in enumerate(columns["error"]) if flag]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(
            f"crossent.distributed: rank(s) {failed} of the group refused their arguments (each "
            "raised its own error); this rank's arguments were valid"
        )
    for name in agree:
        if len(set(columns[name])) > 1:
            raise ValueError(
                f"Expected every rank to pass the same {name}, but got {list(columns[name])} "
                "(in rank order)"
            )
    starts = _starts(columns["vocab_start"], columns["width"])
    widths = columns["width"]
    return Shard(
        group=group,
        rank=rank,
        world=len(widths),
        start=starts[rank],
        width=widths[rank],
        num_classes=sum(widths),
        max_width=max(widths),
        facts=columns,
    )


def _starts(given: tuple[int, ...], widths: tuple[int, ...]) -> list[int]:
    """Each rank's first class: the given ones (checked to tile ``[0, K)``) or prefix sums."""
    total = sum(widths)
    if total == 0:
        raise ValueError(
            f"Expected the ranks to hold at least one class between them, but got widths "
            f"{list(widths)} (in rank order)"
        )
    if all(s < 0 for s in given):
        return [sum(widths[:r]) for r in range(len(widths))]
    if any(s < 0 for s in given):
        raise ValueError(
            "Expected `vocab_start` on every rank or on none, but got "
            f"{[None if s < 0 else s for s in given]} (in rank order)"
        )
    order = sorted(range(len(given)), key=lambda r: (given[r], widths[r]))
    position = 0
    for r in order:
        if given[r] != position:
            raise ValueError(
                "Expected the ranks' column ranges [vocab_start, vocab_start + width) to tile "
                f"[0, {total}) without gaps or overlaps, but got starts {list(given)} and "
                f"widths {list(widths)} (in rank order)"
            )
        position += widths[r]
    return list(given)
