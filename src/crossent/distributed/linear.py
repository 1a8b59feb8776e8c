r"""A column-sharded output layer and its loss, fused: each rank holds a chunk of its logits.

Each rank holds the rows ``W_r`` ``(K_local, H)`` (and ``b_r``) of the output layer, i.e. the
columns of the logits ``Z = X W^T + b`` it is responsible for, and the same hidden states
``X`` ``(N, H)``. Chunk by chunk of rows, each rank forms ``Z_c = X_c W_r^T + b_r``, the row
statistics are all-reduced (:mod:`crossent.distributed.rows`), the chunk becomes its gradient
``G_c`` in place, and

.. math::

    \nabla_{W_r} \mathrel{+}= G_c^T X_c, \qquad \nabla_{b_r} \mathrel{+}= \textstyle\sum G_c,
    \qquad \nabla_X[c] = \sum_r G_{c,r} W_r .

The weight and bias gradients are complete on each rank; the hidden states' gradient is a sum
over the ranks (each contributes ``G_{c,r} W_r``). With ``reduce_grad_hidden=True`` (default)
it is all-reduced here, once per call (``N x H`` values, the same all-reduce a column-parallel
layer's input needs in Megatron's backward); with ``False`` the function returns this rank's
partial sum and the caller reduces it, e.g. with Megatron's
``copy_to_tensor_model_parallel_region`` before the layer (or the sequence-parallel all-gather,
whose backward reduce-scatters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.core.problem import EngineOptions, reduce_losses, reduction_scale
from crossent.core.targets import check_log_target, check_smoothing
from crossent.core.term import Term
from crossent.distributed.collectives import all_reduce, resolve_group
from crossent.distributed.local import (
    LOCAL_ERRORS,
    LocalCall,
    describe_call,
    prepare,
    refuse_formula,
)
from crossent.distributed.loss import term_and_options
from crossent.distributed.rows import chunk_pass
from crossent.distributed.shard import Shard
from crossent.distributed.targets import ShardedTargets, vector_mode
from crossent.linear.args import (
    check_accumulate_dtype,
    check_chunk_size,
    flatten_operands,
    flatten_target,
)
from crossent.linear.autograd import run_fused
from crossent.linear.buffers import GradientBuffers, Gradients, chunk_logits
from crossent.linear.fused import choose_chunk_rows


@dataclass(frozen=True)
class _ShardedLinearProblem:
    """One fused call (the :class:`crossent.linear.autograd.LinearCall` protocol)."""

    shard: Shard
    targets: ShardedTargets
    opts: EngineOptions
    rows: int
    accumulate_dtype: torch.dtype
    reduce_grad_hidden: bool

    @property
    def reduction(self) -> str:
        return self.opts.reduction

    def forward(
        self, x: Tensor, w: Tensor, b: Tensor | None, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor, Gradients | None]:
        if self.reduction == "none":  # the gradients are formed in backward, per-row scaled
            return self._sweep(x, w, b, (False, False, False), None)[0], None
        losses, grads = self._sweep(x, w, b, needs, None)
        return reduce_losses(losses, self.targets, self.reduction), grads

    def backward(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        needs: tuple[bool, bool, bool],
        grad_output: Tensor,
    ) -> Gradients:
        return self._sweep(x, w, b, needs, grad_output.reshape(-1))[1]

    def differentiable(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        raise NotImplementedError(
            "crossent.distributed: double backward (create_graph=True), targets or class "
            "weights that require grad, and torch.func transforms are not available for "
            "vocabulary-parallel losses"
        )

    def _sweep(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        needs: tuple[bool, bool, bool],
        row_scale: Tensor | None,
    ) -> tuple[Tensor, Gradients]:
        """Per-row losses and the gradients in ``needs`` (``grad_hidden`` reduced if asked)."""
        losses = torch.empty(x.shape[0], dtype=compute_dtype(x.dtype), device=x.device)
        empty = w.shape[0] == 0  # a rank that holds no class: its weight gradient is (0, H)
        wanted = (needs[0], needs[1] and not empty, needs[2])
        grads = GradientBuffers.new(x, w, wanted, self.accumulate_dtype)
        self._loop(x, w, b, row_scale, losses, grads)  # the chunk buffer is freed on return
        grad_x, grad_w, grad_b = grads.result(b)
        if needs[1] and empty:
            grad_w = torch.zeros_like(w)
        if grad_x is not None and self.reduce_grad_hidden:
            all_reduce(grad_x, "sum", self.shard.group)
        return losses, (grad_x, grad_w, grad_b)

    def _loop(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        row_scale: Tensor | None,
        losses: Tensor,
        grads: GradientBuffers,
    ) -> None:
        want = grads.wanted()
        scale = reduction_scale(self.targets, self.reduction, losses.dtype)
        chunks: Iterator[tuple[slice, Tensor]] = chunk_logits(x, w, b, self.rows)
        for span, logits in chunks:
            out = logits if want else None
            losses[span] = chunk_pass(
                logits, self.targets.rows(span), scale, self.opts, self.shard, out
            )
            if not want:
                continue
            if row_scale is not None:
                logits.mul_(row_scale[span].to(logits.dtype).unsqueeze(1))
            grads.add(logits, x, w, span)


@dataclass(frozen=True)
class _LinearArgs:
    """One rank's checked layer and target."""

    x: Tensor
    w: Tensor
    b: Tensor | None
    batch: tuple[int, ...]
    local: LocalCall
    rows: int
    accumulate_dtype: torch.dtype


def _check_linear(
    term: Term,
    hidden: object,
    local_weight: object,
    local_bias: object,
    target: object,
    settings: dict[str, Any],
    chunk_size: object,
    accumulate_dtype: object,
) -> _LinearArgs:
    weight = checks.check_tensor("local_weight", local_weight)
    if weight.dim() != 2:
        raise checks.fail("local_weight", "to have shape (K_local, H)", weight)
    layout = flatten_operands(hidden, weight, local_bias)
    flat = flatten_target(layout, target)
    if flat.is_floating_point():
        check_log_target(term, flat)
    acc = check_accumulate_dtype(accumulate_dtype, weight.dtype)
    (n, h), width = layout.x.shape, weight.shape[0]
    rows = check_chunk_size(chunk_size)
    if rows is None:
        x = layout.x
        rows = choose_chunk_rows(n, h, width, x.dtype, weight.dtype, acc, x.device)
    like = torch.empty((), dtype=layout.x.dtype, device=layout.x.device).expand(n, width)
    class_weight, _ = vector_mode("weight", settings["weight"])
    class_scale, _ = vector_mode("alpha", settings["class_scale"])
    refuse_formula(flat if flat.is_floating_point() else None, class_weight, class_scale)
    local = LocalCall(like, flat, layout.batch, class_weight, class_scale, True)
    return _LinearArgs(layout.x, layout.w, layout.b, layout.batch, local, rows, acc)


def vocab_parallel_linear_loss(
    hidden: Tensor,
    local_weight: Tensor,
    target: Tensor,
    loss: str = "ce",
    *,
    local_bias: Tensor | None = None,
    group: dist.ProcessGroup | None = None,
    vocab_start: int | None = None,
    reduce_grad_hidden: bool = True,
    chunk_size: int | None = None,
    accumulate_dtype: torch.dtype | None = None,
    **options: Any,
) -> Tensor:
    r"""An engine loss of a vocabulary-sharded output layer, fused: ``loss(X W^T + b)``.

    Each rank holds ``local_weight`` ``(K_local, H)``: the rows of the output layer's weight
    for its contiguous range of classes (a column-parallel layer's shard), and the same
    ``hidden`` states. The result equals :func:`crossent.distributed.vocab_parallel_loss` on
    the logits ``hidden @ local_weight.T + local_bias`` (and so the loss of the full layer on
    one process), and the gradients of ``local_weight`` and ``local_bias`` are this rank's rows
    of the full gradients. Per chunk of rows the logits exist only as a chunk of this rank's
    columns; the row statistics of each chunk are all-reduced (a few floats per row).

    Who reduces ``grad_hidden``: each rank's ``G W_r`` is a partial sum. With
    ``reduce_grad_hidden=True`` (default) this function all-reduces it (``N x H`` values, once
    per call, in the forward pass with the other gradients; in backward for
    ``reduction="none"``), so ``hidden.grad`` is the full gradient on every rank. Pass
    ``False`` when the caller's own mapping reduces it — Megatron's
    ``copy_to_tensor_model_parallel_region`` (identity forward, all-reduce backward) applied
    to ``hidden`` before this call, or the sequence-parallel all-gather (reduce-scatter
    backward) — then ``hidden.grad`` from this function is this rank's partial sum.

    Args:
        hidden: hidden states ``(*, H)``, the same on every rank.
        local_weight: ``(K_local, H)``, this rank's rows of the output layer.
        target: global class indices ``(*)`` (the same on every rank), or this rank's columns
            of probability targets ``(*, K_local)``.
        loss: a registry name or spec of one engine term (:func:`term_losses`), or a
            :class:`crossent.terms.Term`. Default ``"ce"``.
        local_bias: ``(K_local,)``. Default None.
        group: the tensor-parallel process group (``None``: the default group).
        vocab_start: this rank's first class (``None`` on every rank: consecutive ranges in
            rank order).
        reduce_grad_hidden: all-reduce the hidden states' gradient here (see above).
        chunk_size: rows per chunk (``None``: chosen from the shapes and free memory; the
            smallest over the ranks is used).
        accumulate_dtype: dtype of the weight and bias gradient accumulators (as
            :func:`crossent.linear_loss`).
        **options: the loss's arguments, as for :func:`vocab_parallel_loss`.

    Returns:
        The loss, the same on every rank (per row ``(*)`` for ``reduction="none"``).

    Example:
        >>> # on each rank, with the output layer's weight split by rows
        >>> w_local = full_weight.chunk(world, dim=0)[rank].requires_grad_()  # doctest: +SKIP
        >>> loss = vocab_parallel_linear_loss(hidden, w_local, target, "focal")  # doctest: +SKIP
        >>> loss.backward()  # w_local.grad: this rank's rows  # doctest: +SKIP
    """
    group = resolve_group(group)
    term, settings = term_and_options(loss, options)
    reduction = checks.check_reduction(settings["reduction"])
    z_loss = checks.check_real("z_loss", settings["z_loss"], low=0.0)
    ignore_index = checks.check_ignore_index(settings["ignore_index"])
    args, error = None, None
    try:
        args = _check_linear(
            term, hidden, local_weight, local_bias, target, settings, chunk_size, accumulate_dtype
        )
    except LOCAL_ERRORS as err:
        error = err
    needs_hidden = isinstance(hidden, Tensor) and hidden.requires_grad
    extra = {"chunk_rows": args.rows if args else 1, "hidden_grad": int(needs_hidden)}
    local = args.local if args else None
    shard = describe_call(group, local, error, vocab_start, extra)
    if len(set(shard.facts["hidden_grad"])) > 1:
        raise ValueError("Expected `hidden` to require grad on every rank or on none")
    assert args is not None
    eps = check_smoothing(settings["label_smoothing"], settings["smoothing"], shard.num_classes)
    targets = prepare(shard, args.local, ignore_index, eps, settings["smoothing"])
    opts = EngineOptions(
        term, None, None, ignore_index, reduction, eps, settings["smoothing"], z_loss, True
    )
    rows = min(shard.facts["chunk_rows"])
    problem = _ShardedLinearProblem(
        shard, targets, opts, rows, args.accumulate_dtype, reduce_grad_hidden
    )
    soft = args.local.target if args.local.target.is_floating_point() else None
    loss_value = run_fused(args.x, args.w, args.b, problem, soft, *_vectors(args.local))
    if reduction == "none":
        loss_value = loss_value.reshape(args.batch)
    if soft is not None:
        return loss_value.to(torch.promote_types(loss_value.dtype, soft.dtype))
    return loss_value


def _vectors(local: LocalCall) -> tuple[Tensor | None, Tensor | None]:
    return local.weight, local.class_scale
