"""The process group of a vocabulary-parallel call and every collective it issues.

All communication of :mod:`crossent.distributed` goes through :func:`all_reduce` and
:func:`all_gather`, which also append a :class:`CollectiveCall` to each active
:func:`record_collectives` log: the benchmark and the tests count the bytes that way (the
payload one rank hands to the collective; a ring all-reduce puts about twice that on each
rank's link).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


@dataclass(frozen=True)
class CollectiveCall:
    """One collective as issued by this rank.

    Attributes:
        kind: ``"all_reduce"`` or ``"all_gather"``.
        op: ``"sum"``, ``"max"``, ``"min"`` (all-reduce) or ``""`` (all-gather).
        shape: shape of the tensor this rank contributes.
        dtype: its dtype.
        bytes: its size in bytes (``numel * itemsize``).
    """

    kind: str
    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    bytes: int


_LOGS: list[list[CollectiveCall]] = []


@contextmanager
def record_collectives() -> Iterator[list[CollectiveCall]]:
    """Collect the collectives issued inside the ``with`` block (this process only).

    Example:
        >>> with record_collectives() as calls:  # doctest: +SKIP
        ...     loss = vocab_parallel_loss(local_logits, target)
        >>> sum(c.bytes for c in calls)  # doctest: +SKIP
    """
    log: list[CollectiveCall] = []
    _LOGS.append(log)
    try:
        yield log
    finally:
        _LOGS.remove(log)


def _record(kind: str, op: str, t: Tensor) -> None:
    call = CollectiveCall(kind, op, tuple(t.shape), t.dtype, t.numel() * t.element_size())
    for log in _LOGS:
        log.append(call)


def all_reduce(t: Tensor, op: str, group: dist.ProcessGroup) -> Tensor:
    """Reduce ``t`` (contiguous) in place over ``group`` with ``op`` (``"sum" | "max" | "min"``)."""
    _record("all_reduce", op, t)
    dist.all_reduce(t, op=_OPS[op], group=group)
    return t


def all_gather(t: Tensor, group: dist.ProcessGroup) -> Tensor:
    """``(world, *t.shape)``: every rank's ``t`` in group-rank order."""
    _record("all_gather", "", t)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t.contiguous(), group=group)
    return torch.stack(out)


def resolve_group(group: object) -> dist.ProcessGroup:
    """The process group of a call: ``group``, or the default group when it is ``None``.

    Raises:
        RuntimeError: when no default group is initialised.
        TypeError: when ``group`` is not a process group.
        ValueError: when this process is not a member of ``group``.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "crossent.distributed needs an initialised torch.distributed process group: call "
            "torch.distributed.init_process_group(...) on every rank first (or run under "
            "torchrun)"
        )
    if group is None:
        return dist.group.WORLD
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(
            f"Expected `group` to be a torch.distributed.ProcessGroup or None, but got "
            f"{type(group).__name__}"
        )
    if dist.get_rank(group) < 0:
        raise ValueError("Expected `group` to contain this process, but it is not a member")
    return group
