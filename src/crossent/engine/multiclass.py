r"""The term engine: one chunked pass computes any per-class loss and its analytic gradient.

For logits ``z`` of one element (``K`` classes), target distribution ``P``, class weights
``w`` and a term ``(F, G)`` from :mod:`crossent.terms` (docs/design.md, "One engine"):

.. math::

    s = z - \operatorname{lse}(z), \quad q = e^{s}, \quad
    \ell = \sum_k w_k F(s_k, P_k) + \lambda\,\operatorname{lse}(z)^2,

    \frac{\partial \ell}{\partial z_j} = w_j G(s_j, P_j) - q_j \sum_k w_k G(s_k, P_k)
        + 2 \lambda \operatorname{lse}(z)\, q_j .

Design (chosen by measurement, see ``benchmarks/bench_cross_entropy.py`` and the README):
the gradient is formed **in the forward pass**, chunk by chunk while the chunk is in cache,
and stored; backward returns it untouched when ``grad_output == 1`` (the usual scalar loss)
and scales a copy otherwise, so a second backward (``retain_graph=True``) is correct. On this
CPU the exponential is the costly part: forming the gradient in forward needs one ``exp`` per
logit, the save-statistics-and-recompute design needs two; at (4096, 32000), 2 threads, it
measured 0.614 s against 0.454 s (``benchmarks/probe_gradient_timing.py``). Nothing of
logits size is kept besides the gradient itself (no log-softmax beside the logits).

* One-hot fast path: for class-index targets without smoothing and a term that vanishes
  where ``P = 0``, a row needs only ``lse`` and the target logit; the gradient is
  ``q_j c + [j = t] w_t G_t`` with one coefficient ``c`` per row. For ``(N, K)`` logits
  with a separate gradient buffer (``fast_softmax_rows``) a chunk costs PyTorch's fused
  softmax, one gather and one scaling; the per-row target terms run once over all rows
  (the per-chunk small operations were ~40% of the step at (4096, 32000)).
* ``inplace_backward=True`` writes the gradient into the logits' storage (no new buffer);
  the logits' version counter is bumped so that any other saved use fails loudly, and a
  second backward raises.
* Half inputs (fp16/bf16) are computed in float32; the loss is returned in float32 and the
  gradient in the input dtype. float64 stays float64.
* Under ``torch.no_grad()`` (or when the logits do not require grad) only the loss is
  computed. Probability targets that require grad, and double backward, go through a
  differentiable formula written from ``F`` (slower, same values).

This module holds the options, the chunk loop, the reductions, the differentiable fallback
and the public entry :func:`term_loss`; what happens inside one chunk (row statistics, the
one-hot, smoothed-index and full-target routes) is :mod:`crossent.engine.chunks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent import kernels
from crossent.core import checks
from crossent.core.autograd import (
    EngineFunction,
    Problem,
    compute_dtype,
    takes_formula,
    writes_in_place,
)
from crossent.core.problem import EngineOptions, reduce_losses, reduction_scale
from crossent.core.targets import (
    Targets,
    as_batch,
    check_input,
    check_log_target,
    check_smoothing,
    prepare_targets,
    promote_to_target,
    smoothed_target_chunk,
    warn_if_probabilities,
)
from crossent.core.term import Term, value_where_target
from crossent.core.threads import run_blocks
from crossent.engine.chunks import fast_chunk, fast_softmax_rows, full_chunk, linear_chunk

# Elements per chunk: ~1M float32 (4 MiB) keeps a chunk's temporaries in cache; measured
# best among 2^18..2^22 at (4096, 32000) on the 2-core benchmark machine.
CHUNK_ELEMENTS = 1 << 20


def iter_chunks(n: int, k: int, d: int) -> Iterator[tuple[slice, slice]]:
    """Row and position slices of ``(N, K, D)`` covering ~``CHUNK_ELEMENTS`` logits each."""
    if n * k * d == 0:  # no logits (an empty batch or a zero-size spatial dim): no chunks
        return
    if k * d <= CHUNK_ELEMENTS:
        rows = max(1, CHUNK_ELEMENTS // (k * d))
        for n0 in range(0, n, rows):
            yield slice(n0, min(n, n0 + rows)), slice(0, d)
    else:
        span = max(1, CHUNK_ELEMENTS // k)
        for n0 in range(n):
            for d0 in range(0, d, span):
                yield slice(n0, n0 + 1), slice(d0, min(d, d0 + span))


def forward_pass(
    z: Tensor,
    targets: Targets,
    opts: EngineOptions,
    want_grad: bool,
    column_sums: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Chunked loss per element ``(N, D)`` and gradient ``(N, K, D)`` (or ``None``).

    ``z`` is the ``(N, K, D)`` view of the contiguous logits. ``column_sums``: a ``(K, D)``
    accumulator to which the gradient's sum over rows is added, taken in the compute dtype
    before a half gradient is rounded (the fused linear layer's bias gradient), or ``None``.
    """
    cdt = compute_dtype(z.dtype)
    grad = None
    if want_grad:
        # A fresh buffer from PyTorch's allocator: THP_MEM_ALLOC_ENABLE=1 gives it huge pages.
        grad = z if opts.inplace_backward else torch.empty_like(z)
    scale = reduction_scale(targets, opts.reduction, cdt)
    if z.numel() == 0:  # no logits (N, C or a spatial size is 0): every loss is 0
        return torch.zeros(z.shape[0], z.shape[2], dtype=cdt, device=z.device), grad
    if grad is not None and opts.softmax_rows(z, targets) and column_sums is None:
        rows = max(1, CHUNK_ELEMENTS // z.shape[1])
        losses = fast_softmax_rows(z.squeeze(2), targets, scale, opts, grad.squeeze(2), rows)
        return losses.unsqueeze(1), grad
    return _chunked_pass(z, targets, opts, scale, grad, column_sums), grad


def _chunked_pass(
    z: Tensor,
    targets: Targets,
    opts: EngineOptions,
    scale: Tensor,
    grad: Tensor | None,
    column_sums: Tensor | None = None,
) -> Tensor:
    """Losses ``(N, D)`` chunk by chunk, the gradient into ``grad`` when it is given.

    The chunks are shared out over the threads (:func:`crossent.core.threads.run_blocks`),
    each writing its own rows. ``column_sums`` (``(K, D)``, or ``None``) gets the gradient
    summed over rows, added chunk by chunk in order (the same sums whichever thread ran what).
    """
    n, k, d = z.shape
    losses = torch.empty(n, d, dtype=compute_dtype(z.dtype), device=z.device)
    mult = _class_multiplier(opts, k, losses.dtype, z.device)
    if mult is not None and d == 1:
        mult = mult.squeeze(2)
    chunk = _ChunkRoute(z, targets, opts, scale, grad, mult)
    chunks = list(iter_chunks(n, k, d))
    partial: list[Tensor | None] = [None] * len(chunks)

    def block(i: int) -> None:
        rows, cols = chunks[i]
        loss, g = chunk(rows, cols)
        losses[rows, cols] = loss.reshape(losses[rows, cols].shape)
        if g is None:
            return
        if column_sums is not None:
            partial[i] = (g.unsqueeze(2) if d == 1 else g).sum(0)
        g_out = chunk.view(grad[rows, :, cols])
        if g.data_ptr() != g_out.data_ptr():
            g_out.copy_(g)

    run_blocks(range(len(chunks)), block)
    if column_sums is not None:
        for (_, cols), part in zip(chunks, partial, strict=True):
            if part is not None:
                column_sums[:, cols] += part
    return losses


@dataclass(frozen=True)
class _ChunkRoute:
    """The loss and gradient of one chunk of ``(N, K, D)`` logits by the route that fits.

    One-hot fast path (:func:`fast_chunk`), smoothed class indices for a term linear in the
    target (:func:`linear_chunk`), or the full target (:func:`full_chunk`). The gradient is
    written straight into ``grad`` where the dtypes agree.
    """

    z: Tensor
    targets: Targets
    opts: EngineOptions
    scale: Tensor
    grad: Tensor | None
    mult: Tensor | None  # w_k * class_scale_k, (1, K, 1) or (1, K) for (N, K) logits

    def view(self, a: Tensor) -> Tensor:
        """``a`` without its position dim when ``D = 1``.

        ``(N, K)`` logits are computed on 2-D chunks: ops on ``(R, K, 1)`` views measured
        ~10x slower.
        """
        return a.squeeze(2) if self.z.shape[2] == 1 else a

    def __call__(self, rows: slice, cols: slice) -> tuple[Tensor, Tensor | None]:
        z, targets, opts = self.z, self.targets, self.opts
        cdt = compute_dtype(z.dtype)
        view = self.view
        x = view(z[rows, :, cols]).to(cdt)
        g_out = view(self.grad[rows, :, cols]) if self.grad is not None else None
        # e = exp(z - m) may be written straight into the gradient buffer when dtypes agree.
        out = g_out if (g_out is not None and x.dtype == z.dtype) else None
        if g_out is not None and out is None:
            out = torch.empty_like(x)
        valid = view(targets.valid[rows, cols].unsqueeze(1))
        mult = self.mult
        if opts.fast_path(targets) or opts.linear_route(targets):
            t = view(targets.index[rows, cols].unsqueeze(1))
            ew = view(targets.elem_weight[rows, cols].unsqueeze(1)).to(cdt)
            if opts.fast_path(targets):
                return fast_chunk(x, t, ew, valid, self.scale, opts, out)
            return linear_chunk(x, t, ew, valid, self.scale, opts, mult, out)
        p = smoothed_target_chunk(
            targets, rows, cols, z.shape[1], opts.label_smoothing, opts.smoothing, cdt
        )
        return full_chunk(x, view(p), valid, self.scale, opts, mult, g_out is not None)


def dense_pass(z: Tensor, targets: Targets, opts: EngineOptions) -> tuple[Tensor, Tensor]:
    """Losses ``(N, D)`` and gradient ``(N, K, D)`` of ``(N, K, D)`` logits in one block.

    The general route of :func:`forward_pass` (the full target ``P``) on all of ``z`` at
    once, with no host reads, no data-pointer tests and no writes into buffers it was given:
    the form ``torch.compile`` traces into one graph (the fused linear layer's compiled
    chunks). The gradient is in the compute dtype (float32 for half logits).
    """
    k = z.shape[1]
    x = z.to(compute_dtype(z.dtype))
    scale = reduction_scale(targets, opts.reduction, x.dtype)
    p = smoothed_target_chunk(
        targets, slice(None), slice(None), k, opts.label_smoothing, opts.smoothing, x.dtype
    )
    mult = _class_multiplier(opts, k, x.dtype, x.device)
    loss, grad = full_chunk(x, p, targets.valid.unsqueeze(1), scale, opts, mult, True)
    assert grad is not None
    return loss, grad


def _class_multiplier(
    opts: EngineOptions, k: int, dtype: torch.dtype, device: torch.device
) -> Tensor | None:
    """``w_k * class_scale_k`` as ``(1, K, 1)`` for the full path, or ``None``."""
    mult = None
    for vec in (opts.weight, opts.class_scale):
        if vec is not None:
            v = vec.to(dtype=dtype, device=device).view(1, k, 1)
            mult = v if mult is None else mult * v
    return mult


def shifted_log_softmax(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """``s = (x - m) - log d`` along ``dim``, with ``m`` and ``log d = log sum e^(x - m)``.

    Exact to float rounding even for logits near 1e4 (``x - lse`` would round ``lse`` first),
    differentiable in ``x``. ``m`` is the row maximum, detached (a constant shift), and 0 for a
    fully masked row (all ``-inf``), whose ``s`` then stays ``-inf`` instead of NaN and whose
    ``log d`` is ``-inf``. ``dim`` must not be empty.
    """
    m = x.detach().amax(dim=dim, keepdim=True)
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    shifted = x - m
    log_d = torch.logsumexp(shifted, dim=dim, keepdim=True)
    return shifted - torch.where(torch.isneginf(log_d), torch.zeros_like(log_d), log_d), m, log_d


def differentiable_loss(z: Tensor, targets: Targets, opts: EngineOptions) -> Tensor:
    """The same loss written from ``F`` with autograd-differentiable ops (no custom gradient).

    Used when a probability target requires grad and for double backward
    (``create_graph=True``); materialises ``(N, K, D)`` temporaries, so it is slower.
    Returns the per-element losses ``(N, D)``.
    """
    n, k, d = z.shape
    x = z.to(compute_dtype(z.dtype))
    s, m, log_d = shifted_log_softmax(x, dim=1)
    lse = m + log_d  # -inf for a fully masked row
    p = smoothed_target_chunk(
        targets, slice(None), slice(None), k, opts.label_smoothing, opts.smoothing, x.dtype
    )
    f = value_where_target(opts.term, s, p)
    mult = _class_multiplier(opts, k, x.dtype, x.device)
    if mult is not None:
        f = f * mult
    loss = f.sum(dim=1)
    if opts.z_loss:
        loss = loss + opts.z_loss * lse.squeeze(1) ** 2
    return torch.where(targets.valid, loss, torch.zeros_like(loss))


@dataclass(frozen=True)
class _MulticlassProblem:
    """One multiclass engine call (see :class:`crossent.core.autograd.Problem`)."""

    targets: Targets
    opts: EngineOptions

    @property
    def reduction(self) -> str:
        return self.opts.reduction

    @property
    def inplace_backward(self) -> bool:
        return self.opts.inplace_backward

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        losses, grad = forward_pass(z, self.targets, self.opts, want_grad)
        return reduce_losses(losses, self.targets, self.reduction), grad

    def differentiable(self, z: Tensor) -> Tensor:
        return reduce_losses(
            differentiable_loss(z, self.targets, self.opts), self.targets, self.reduction
        )

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        return grad_output.reshape(grad.shape[0], 1, grad.shape[2])


def term_loss(
    input: Tensor,
    target: Tensor,
    term: Term,
    *,
    weight: Tensor | None = None,
    class_scale: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    inplace_backward: bool = False,
) -> Tensor:
    """Any per-class term's loss from logits, with PyTorch's target and reduction semantics.

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)`` (integer), or
            probabilities shaped like ``input`` (float).
        term: the per-class term (:class:`crossent.terms.Term`).
        weight: class weights ``(C,)``; ``mean`` divides by the sum of the target classes'
            weights over non-ignored elements (PyTorch's weighted mean).
        class_scale: per-class multiplier ``(C,)`` of each element's loss that does *not*
            enter the mean's denominator (focal's ``alpha``); validated by the caller.
        ignore_index: class index whose elements contribute nothing (index targets only).
        reduction: ``"none" | "mean" | "sum"``.
        label_smoothing: ``eps`` in [0, 1].
        smoothing: ``"uniform"`` (``eps/K`` to every class) or ``"others"`` (``eps/(K-1)`` to
            every non-target class).
        z_loss: coefficient ``lam`` of ``lam * lse(z)^2`` added per element (unweighted).
        inplace_backward: write the gradient into ``input``'s storage.

    Returns:
        The reduced loss (float32 for half inputs), or per-element losses for ``"none"``.
    """
    input = check_input(input)
    reduction = checks.check_reduction(reduction)
    z_loss = checks.check_real("z_loss", z_loss, low=0.0)
    ignore_index = checks.check_ignore_index(ignore_index)
    target = checks.check_tensor("target", target)
    checks.check_devices(input, target=target, weight=weight, class_scale=class_scale)
    input = promote_to_target(input, target)
    input, target, unbatched = as_batch(input, target)
    k = input.shape[1]
    eps = check_smoothing(label_smoothing, smoothing, k)
    weight = checks.check_class_weight(weight, k)
    inplace_backward = writes_in_place(input, inplace_backward)
    if inplace_backward and not input.is_contiguous():
        raise checks.fail("input", "to be contiguous with inplace_backward=True", input)
    warn_if_probabilities(input)
    targets = prepare_targets(input, target, weight, class_scale, ignore_index, eps, smoothing)
    check_log_target(term, targets.probs)
    opts = EngineOptions(
        term,
        weight,
        class_scale,
        ignore_index,
        reduction,
        eps,
        smoothing,
        z_loss,
        inplace_backward,
    )
    problem = _MulticlassProblem(targets, opts)
    z = input.contiguous().reshape(input.shape[0], k, math.prod(input.shape[2:]))
    if kernels.use_kernel(z, targets, opts):  # CUDA logits: the Triton kernel template
        loss = kernels.term_loss(z, targets, opts)
    else:
        loss = run(problem, z, targets.probs, weight, class_scale)
    if reduction == "none":
        loss = loss.reshape(input.shape[0], *input.shape[2:])
        if unbatched:
            loss = loss.squeeze(0)
    return loss


def run(problem: Problem, z: Tensor, *others: Tensor | None) -> Tensor:
    """Dispatch one problem: differentiable fallback, analytic gradient, or loss only.

    ``others`` are the call's other tensor inputs (probability targets, class weights, ...).

    * one of ``others`` requires grad, a tangent of forward-mode AD, a ``torch.func``
      transform or ``torch.compile`` tracing: the differentiable formula
      (:func:`crossent.core.autograd.takes_formula`);
    * logits that require grad under grad mode: :class:`EngineFunction` (analytic gradient);
    * otherwise (``no_grad``, inference): the loss alone, no gradient work.
    """
    if takes_formula((z,), others):
        return problem.differentiable(z)
    if torch.is_grad_enabled() and z.requires_grad:
        return EngineFunction.apply(z, problem)
    loss, _ = problem.compute(z.detach(), want_grad=False)
    return loss
