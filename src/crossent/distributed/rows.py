"""The chunk loop of a vocabulary-parallel loss: the rows in chunks, each chunk by its route.

The chunks (:func:`crossent.distributed.stats.chunk_rows`) are the same on every rank, so the
collectives of :mod:`crossent.distributed.routes` match; the route depends only on arguments
every rank shares (the term, the kind of target, the smoothing).
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.autograd import compute_dtype
from crossent.core.problem import EngineOptions, reduction_scale
from crossent.distributed.routes import affine_chunk, full_chunk, linear_chunk, onehot_chunk
from crossent.distributed.shard import Shard
from crossent.distributed.stats import chunk_rows
from crossent.distributed.targets import ShardedTargets


def chunk_pass(
    z: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
) -> Tensor:
    """Losses ``(R,)`` of one chunk ``z`` ``(R, K_local)``; its gradient into ``out`` if given.

    ``z`` is computed in its compute dtype (float32 for half inputs); ``out`` (the input's
    dtype) may be ``z`` itself.
    """
    x = z.to(compute_dtype(z.dtype))
    want_grad = out is not None
    direct = out if (out is not None and x.dtype == out.dtype) else None
    if opts.fast_path(tg):
        route = onehot_chunk
    elif tg.index is not None and opts.term.affine_slope is not None:
        route = affine_chunk
    elif tg.index is not None and opts.term.linear_in_target:
        route = linear_chunk
    else:
        route = full_chunk
    loss, g = route(x, tg, scale, opts, shard, direct, want_grad)
    if g is not None and out is not None and g.data_ptr() != out.data_ptr():
        out.copy_(g)
    return loss


def sharded_pass(
    z: Tensor, targets: ShardedTargets, opts: EngineOptions, shard: Shard, want_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-row losses ``(N,)`` and this rank's gradient ``(N, K_local)`` (or ``None``).

    The rows are walked in chunks of :func:`chunk_rows` (the same on every rank, so the
    collectives match); with ``opts.inplace_backward`` the gradient overwrites ``z``.
    """
    n = z.shape[0]
    cdt = compute_dtype(z.dtype)
    grad = None
    if want_grad:
        grad = z if opts.inplace_backward else torch.empty_like(z)
    scale = reduction_scale(targets, opts.reduction, cdt)
    losses = torch.empty(n, dtype=cdt, device=z.device)
    rows = chunk_rows(n, shard)
    for r0 in range(0, n, rows):
        span = slice(r0, min(n, r0 + rows))
        out = None if grad is None else grad[span]
        losses[span] = chunk_pass(z[span], targets.rows(span), scale, opts, shard, out)
    return losses, grad
