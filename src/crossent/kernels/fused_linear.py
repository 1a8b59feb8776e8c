r"""Fused linear layer + engine loss: the logits exist one chunk of rows at a time.

For hidden states ``X`` ``(N, H)``, a weight ``W`` ``(K, H)`` and a bias ``b`` ``(K,)``, the
loss of :mod:`crossent.engine` on ``Z = X W^T + b`` and all three gradients are formed in one
sweep over row chunks ``c`` (Wijmans et al. 2024 call the idea Cut Cross-Entropy; Liger
Kernel's fused linear cross-entropy uses the same chunk loop):

.. math::

    Z_c = X_c W^T + b, \qquad G_c = \partial \ell / \partial Z_c \;\text{(in place of } Z_c),

    \nabla_X[c] = G_c W, \qquad \nabla_W \mathrel{+}= G_c^T X_c, \qquad
    \nabla_b \mathrel{+}= \textstyle\sum_r G_c[r].

* The chunk's logits become their gradient in place: by the Triton template's fused entry
  point (:func:`crossent.kernels.ops.loss_and_grad_inplace`) for CUDA tensors, by the engine's
  chunk machinery (:func:`crossent.engine.forward_pass` with ``inplace_backward``) elsewhere.
  One logits buffer of ``rows x K`` is reused by every chunk.
* ``grad_W`` is accumulated across chunks in ``accumulate_dtype`` (float32 by default:
  bf16 accumulation has made real training runs diverge, Liger issue 512, OLMo-core PR 370).
  A wider accumulator is kept in row blocks of ``W`` so that converting it to the weight's
  dtype at the end needs only one block of extra memory.
* Everything happens in the forward pass; backward hands the stored gradients out (scaled by
  ``grad_output`` when it is not 1). ``reduction="none"`` cannot scale a summed ``grad_W``
  row by row, so there the forward computes the loss alone and backward runs the sweep again
  with ``grad_output`` folded into each row (one extra matrix product, exact per-row scaling).
* The first backward hands the stored gradients out and forgets them, so PyTorch takes them
  over without a copy and no ``.grad`` shares storage with the graph; a retained second
  backward sweeps again.

Chunk size (:func:`choose_chunk_rows`): every chunk reads ``W`` twice and reads and writes the
``grad_W`` accumulator once, so few large chunks are fast and many small ones are lean.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from crossent import kernels
from crossent._autograd import scale_gradient, takes_formula
from crossent._targets import Targets
from crossent.engine import (
    EngineOptions,
    compute_dtype,
    differentiable_loss,
    forward_pass,
    reduce_losses,
    reduction_scale,
)

if TYPE_CHECKING:
    from crossent.linear_generic import GenericProblem

# CPU (and devices without a memory query): every chunk streams the weight twice and reads and
# writes its gradient once (4 weight-sized transfers), so the time lost per chunk grows with
# K x H and few, large chunks are fast. The logits chunk may take the larger of 32 MiB and an
# eighth of the weight gradient the call allocates anyway. Measured (2 threads, fp32):
# 4096 x 2048 -> 32000: 256 rows (32 MiB) 12.8 s, 64 rows 17.6 s, PyTorch's chunked path 14.7 s
# (benchmarks/bench_linear.py); 1024 x 4096 -> 128256: 512 rows (250 MiB, the eighth) 28.1 s,
# 128 rows (the 32 MiB rule) 37.9 s (a probe timing linear_cross_entropy(chunk_size=...)).
CPU_CHUNK_BYTES = 32 << 20
CPU_WEIGHT_FRACTION = 8
# A float32 accumulator for a narrower weight is kept in this many row blocks of W.
ACC_BLOCKS = 4
# Chunks of at least this many rows are rounded up to a multiple of it (matmul tiles).
_ROW_MULTIPLE = 64


@dataclass(frozen=True)
class FusedProblem:
    """One fused call, validated: targets, engine settings and the chunking.

    Attributes:
        targets: prepared targets of the ``(N, C, D)`` logits (global ``mean`` denominator).
        target: the raw target with batch dims flattened: ``(N, D)`` class indices or
            ``(N, C, D)`` probabilities (what the GPU kernel reads per chunk).
        opts: engine settings (``inplace_backward=True``: a chunk's gradient overwrites it).
        num_classes: ``C``.
        positions: ``D = d1 * ... * dn`` (1 unless ``linear_weight`` is K-dimensional).
        chunk_rows: rows per chunk.
        accumulate_dtype: dtype of the ``grad_W`` and ``grad_b`` accumulators.
    """

    targets: Targets
    target: Tensor
    opts: EngineOptions
    num_classes: int
    positions: int
    chunk_rows: int
    accumulate_dtype: torch.dtype

    @property
    def reduction(self) -> str:
        """``"none" | "mean" | "sum"``."""
        return self.opts.reduction

    def forward(
        self, x: Tensor, w: Tensor, b: Tensor | None, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor, Gradients | None]:
        """The loss, and the gradients in ``needs`` for ``grad_output = 1``.

        ``None`` instead of the gradients for ``reduction="none"`` (a summed ``grad_W``
        cannot be rescaled row by row): then :meth:`backward` sweeps again.
        """
        if self.reduction == "none":
            return fused_pass(x, w, b, self, (False, False, False)).losses, None
        result = fused_pass(x, w, b, self, needs)
        loss = reduce_losses(result.losses, self.targets, self.reduction)
        return loss, (result.grad_input, result.grad_weight, result.grad_bias)

    def backward(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        needs: tuple[bool, bool, bool],
        grad_output: Tensor,
    ) -> Gradients:
        """The gradients in ``needs`` for this ``grad_output`` (a sweep of its own)."""
        result = fused_pass(x, w, b, self, needs, row_scale=grad_output)
        return result.grad_input, result.grad_weight, result.grad_bias

    def differentiable(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The unfused loss written with differentiable operations (materialises the logits).

        Used when a probability target requires grad and for double backward; returns what
        the fused call returns (reduced loss, or ``(N, D)`` losses for ``"none"``).
        """
        z = torch.nn.functional.linear(x, w, b)
        z = z.view(x.shape[0], self.num_classes, self.positions)
        losses = differentiable_loss(z, self.targets, self.opts)
        return reduce_losses(losses, self.targets, self.reduction)


Gradients = tuple[Tensor | None, Tensor | None, Tensor | None]


@dataclass
class FusedResult:
    """Per-element losses ``(N, D)`` and the gradients that were asked for (else ``None``)."""

    losses: Tensor
    grad_input: Tensor | None
    grad_weight: Tensor | None
    grad_bias: Tensor | None


def _available_ram() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes, or ``None`` where it is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def choose_chunk_rows(
    n: int,
    hidden: int,
    classes: int,
    dtype: torch.dtype,
    weight_dtype: torch.dtype,
    accumulate_dtype: torch.dtype,
    device: torch.device,
) -> int:
    """Rows per chunk from ``N``, the hidden size, ``K`` (``C * D``) and free memory.

    A budget for one chunk of logits, by device and mode:

    * CUDA, accumulator wider than the weight (the default for bf16/fp16): few, large chunks,
      since each one reads and writes the accumulator: the larger of 40% of the accumulator
      and a quarter of all the logits (3 chunks at 8192 x 4096 -> 128256, 4 at
      16384 x 2048 -> 32000, in bf16), so the peak stays near the accumulator's size.
    * CUDA, accumulation in the weight's dtype (lean): the size of the hidden states
      ``N x H`` (Liger Kernel's rule; 256 rows at 8192 x 4096 -> 128256).
    * CPU and other devices: the larger of :data:`CPU_CHUNK_BYTES` and
      ``1 / CPU_WEIGHT_FRACTION`` of the weight gradient ``K x H`` (a few large chunks, as
      measured; 256 rows at 4096 x 2048 -> 32000, 512 at H = 4096 for any K).

    Every budget is capped at a quarter of the free memory (``torch.cuda.mem_get_info``, or
    ``MemAvailable`` on the host). The rows are then balanced over the chunks that budget
    needs and rounded up to a multiple of 64; the result is in ``[1, N]``.
    """
    row_bytes = max(1, classes * dtype.itemsize)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if accumulate_dtype.itemsize > weight_dtype.itemsize:
            accumulator = classes * hidden * accumulate_dtype.itemsize
            budget = max(accumulator * 2 // 5, n * row_bytes // 4)
        else:
            budget = n * hidden * dtype.itemsize
        budget = min(budget, free // 4)
    else:
        gradient = classes * hidden * accumulate_dtype.itemsize
        budget = max(CPU_CHUNK_BYTES, gradient // CPU_WEIGHT_FRACTION)
        ram = _available_ram()
        if ram is not None:
            budget = min(budget, ram // 4)
    rows = max(1, min(n, budget // row_bytes))
    chunks = -(-n // rows) if n else 1
    rows = -(-n // chunks) if n else 1  # balanced: the last chunk is not a sliver
    if rows >= _ROW_MULTIPLE:
        rows = min(n, -(-rows // _ROW_MULTIPLE) * _ROW_MULTIPLE)
    return rows


def _chunk_targets(targets: Targets, rows: slice) -> Targets:
    """The rows ``rows`` of prepared targets (the ``mean`` denominator stays the batch's)."""
    return Targets(
        None if targets.index is None else targets.index[rows],
        None if targets.probs is None else targets.probs[rows],
        targets.valid[rows],
        None if targets.elem_weight is None else targets.elem_weight[rows],
        targets.denominator,
    )


def _chunk_loss_fn(
    problem: FusedProblem, dtype: torch.dtype, device: torch.device
) -> Callable[[Tensor, slice, bool], Tensor]:
    """The function that turns a chunk of logits ``(R, C*D)`` into its gradient, in place.

    It returns the chunk's per-element losses ``(R, D)``. The Triton template's fused entry
    point serves CUDA tensors (class ``D = 1`` layouts, terms it knows); the engine serves
    everything else.
    """
    n, c, d = problem.targets.valid.shape[0], problem.num_classes, problem.positions
    shape = torch.empty((), dtype=dtype, device=device).expand(max(n, 1), c, d)
    if d == 1 and kernels.use_kernel(shape, problem.targets, problem.opts):
        from crossent.kernels import ops

        opts = problem.opts
        # the reduction's factor of every gradient entry (0-dim tensor for mean, no host sync)
        mean = problem.reduction == "mean"
        scale = reduction_scale(problem.targets, "mean", torch.float32) if mean else 1.0
        # (N, C) probabilities or (N,) class indices, as the kernel reads them.
        soft = problem.targets.index is None
        target = problem.target.reshape(n, c) if soft else problem.target.reshape(n)

        def kernel_chunk(logits: Tensor, rows: slice, want_grad: bool) -> Tensor:
            losses = ops.loss_and_grad_inplace(
                logits,
                target[rows],
                opts.term,
                weight=opts.weight,
                class_scale=opts.class_scale,
                ignore_index=opts.ignore_index,
                label_smoothing=opts.label_smoothing,
                smoothing=opts.smoothing,
                z_loss=opts.z_loss,
                grad_scale=scale,
            )
            return losses.unsqueeze(1)

        return kernel_chunk

    def engine_chunk(logits: Tensor, rows: slice, want_grad: bool) -> Tensor:
        z = logits.view(logits.shape[0], c, d)
        losses, _ = forward_pass(z, _chunk_targets(problem.targets, rows), problem.opts, want_grad)
        return losses

    return engine_chunk


@functools.cache
def _mixed_addmm(device: torch.device) -> bool:
    """Whether ``torch.addmm(..., out_dtype=float32)`` takes half inputs on ``device``.

    cuBLAS does (half operands, float32 accumulation and output, no upcast copies) in
    recent PyTorch; elsewhere, or in older versions, the operands are upcast per block.
    """
    if device.type != "cuda":
        return False
    a = torch.ones((2, 2), dtype=torch.bfloat16, device=device)
    acc = torch.zeros((2, 2), dtype=torch.float32, device=device)
    try:
        torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return True


def _accumulate(acc: Tensor, a: Tensor, b: Tensor, first: bool) -> None:
    """``acc = a @ b`` (``first``) or ``acc += a @ b``, with ``acc`` possibly wider."""
    beta = 0 if first else 1  # beta = 0: acc may be uninitialised (NaN is not propagated)
    if a.dtype == acc.dtype:
        torch.addmm(acc, a, b, beta=beta, out=acc)
    elif _mixed_addmm(acc.device):
        torch.addmm(acc, a, b, beta=beta, out_dtype=acc.dtype, out=acc)
    else:
        torch.addmm(acc, a.to(acc.dtype), b.to(acc.dtype), beta=beta, out=acc)


class _WeightGradient:
    """``grad_W = sum_c G_c^T X_c`` over chunks, accumulated in ``dtype``.

    A wider accumulator than the weight is split into :data:`ACC_BLOCKS` row blocks, each
    converted and freed in turn at the end, so the conversion needs one block of extra memory
    (plus the final concatenation, no larger than the accumulator) instead of a second
    full-size gradient.
    """

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, weight: Tensor) -> None:
        k, h = shape
        self.out_dtype = weight.dtype
        blocks = 1 if dtype == weight.dtype else min(ACC_BLOCKS, k)
        step = -(-k // blocks)
        self.bounds = [(s, min(k, s + step)) for s in range(0, k, step)]
        self.blocks = [
            torch.empty((e - s, h), dtype=dtype, device=weight.device) for s, e in self.bounds
        ]
        self.first = True

    def add(self, g: Tensor, x: Tensor) -> None:
        """Add ``g^T x`` for a chunk's gradient ``g`` ``(R, K)`` and inputs ``x`` ``(R, H)``."""
        wide = self.blocks[0].dtype
        if g.dtype != wide and not _mixed_addmm(g.device):
            x = x.to(wide)  # once per chunk; g is upcast block by block
        for (s, e), acc in zip(self.bounds, self.blocks, strict=True):
            _accumulate(acc, g[:, s:e].T, x, self.first)
        self.first = False

    def result(self) -> Tensor:
        """The gradient in the weight's dtype (the accumulator itself when dtypes agree)."""
        if self.first:  # no chunk was added (an empty batch): the blocks were never written
            for block in self.blocks:
                block.zero_()
        if len(self.blocks) == 1:
            return self.blocks.pop().to(self.out_dtype)
        parts = []
        while self.blocks:
            parts.append(self.blocks.pop(0).to(self.out_dtype))
        return torch.cat(parts)


def chunk_logits(
    x: Tensor, w: Tensor, b: Tensor | None, rows: int
) -> Iterator[tuple[slice, Tensor]]:
    """``(span, Z_c = X_c W^T + b)`` for the chunks of ``rows`` rows, in order.

    One buffer serves every chunk (a chunk's logits are overwritten by the next one's); it is
    released when the loop ends, so callers loop in a function of its own and convert the
    gradients after it returns.
    """
    n = x.shape[0]
    buffer = x.new_empty((min(rows, n), w.shape[0]))
    for r0 in range(0, n, rows):
        span = slice(r0, min(n, r0 + rows))
        logits = buffer[: span.stop - r0]
        if b is None:
            torch.mm(x[span], w.T, out=logits)
        else:
            torch.addmm(b, x[span], w.T, out=logits)
        yield span, logits


@dataclass
class GradientBuffers:
    """The gradients being formed over the chunks (``None`` where not asked for).

    Attributes:
        input: ``grad_X`` ``(N, H)``, filled chunk by chunk.
        weight: the ``grad_W`` accumulator.
        bias: ``grad_b`` ``(K,)`` in the accumulation dtype, summed over chunks.
    """

    input: Tensor | None
    weight: _WeightGradient | None
    bias: Tensor | None

    @classmethod
    def new(
        cls, x: Tensor, w: Tensor, needs: tuple[bool, bool, bool], dtype: torch.dtype
    ) -> GradientBuffers:
        """Buffers for the gradients of ``(X, W, b)`` in ``needs``; ``dtype`` accumulates W, b."""
        gx = torch.empty(x.shape, dtype=x.dtype, device=x.device) if needs[0] else None
        gw = _WeightGradient((w.shape[0], w.shape[1]), dtype, w) if needs[1] else None
        gb = torch.zeros(w.shape[0], dtype=dtype, device=x.device) if needs[2] else None
        return cls(gx, gw, gb)

    def wanted(self) -> bool:
        """Whether any gradient is asked for."""
        return self.input is not None or self.weight is not None or self.bias is not None

    def add(self, g: Tensor, x: Tensor, w: Tensor, span: slice) -> None:
        """Back-propagate a chunk's logits gradient ``G_c`` ``(R, K)`` through the layer.

        ``grad_X[c] = G_c W``, ``grad_W += G_c^T X_c``, ``grad_b += sum_r G_c[r]``.
        """
        if self.input is not None:
            torch.mm(g, w, out=self.input[span])
        if self.weight is not None:
            self.weight.add(g, x[span])
        if self.bias is not None:
            self.bias += g.sum(0, dtype=self.bias.dtype)

    def result(self, b: Tensor | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The gradients of ``(X, W, b)`` in their parameters' dtypes."""
        grad_b = None if self.bias is None or b is None else self.bias.to(b.dtype)
        return self.input, None if self.weight is None else self.weight.result(), grad_b


def _sweep(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: FusedProblem,
    rows: int,
    row_scale: Tensor | None,
    losses: Tensor,
    grads: GradientBuffers,
) -> None:
    """The chunk loop of :func:`fused_pass`, filling ``losses`` and ``grads`` in place."""
    want_grad = grads.wanted()
    chunk_loss = _chunk_loss_fn(problem, x.dtype, x.device)
    for span, logits in chunk_logits(x, w, b, rows):
        losses[span] = chunk_loss(logits, span, want_grad)
        if not want_grad:
            continue
        if row_scale is not None:
            view = logits.view(logits.shape[0], problem.num_classes, problem.positions)
            view.mul_(row_scale[span].unsqueeze(1))
        grads.add(logits, x, w, span)


def fused_pass(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: FusedProblem,
    needs: tuple[bool, bool, bool],
    row_scale: Tensor | None = None,
) -> FusedResult:
    """One sweep over row chunks: per-element losses and the requested gradients.

    Args:
        x: hidden states ``(N, H)``.
        w: weight ``(C*D, H)``.
        b: bias ``(C*D,)`` or ``None``.
        problem: the validated call.
        needs: which of ``(grad_input, grad_weight, grad_bias)`` to form; none of them means
            the loss alone (no gradient work).
        row_scale: ``(N, D)`` factors of each element's gradient (``grad_output`` of
            ``reduction="none"``), or ``None``.
    """
    n = x.shape[0]
    rows = max(1, min(problem.chunk_rows, n))
    losses = torch.empty((n, problem.positions), dtype=compute_dtype(x.dtype), device=x.device)
    grads = GradientBuffers.new(x, w, needs, problem.accumulate_dtype)
    # The chunk buffer lives inside _sweep only: freed before the gradient is converted.
    _sweep(x, w, b, problem, rows, row_scale, losses, grads)
    return FusedResult(losses, *grads.result(b))


class FusedLinearLoss(torch.autograd.Function):
    """``loss(X W^T + b)`` with every gradient formed in the forward sweep when it can be.

    The call (:class:`FusedProblem` for the engine terms,
    :class:`crossent.linear_generic.GenericProblem` for every other registry loss) has three
    methods: ``forward(x, w, b, needs)`` returns the loss and the gradients for
    ``grad_output = 1``, or ``None`` for them where they cannot be scaled afterwards (then
    ``backward(x, w, b, needs, grad_output)`` sweeps again); ``differentiable(x, w, b)`` is
    the loss on the full logits, for double backward.

    The first backward hands the stored gradients out (scaled in place) and forgets them, so
    no ``.grad`` shares storage with anything kept here; a later backward (``retain_graph``)
    sweeps again from the saved inputs.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        call: FusedProblem | GenericProblem,
    ) -> Tensor:
        """Run the sweep; keep the gradients (or only the inputs, for a later sweep)."""
        ctx.call = call
        ctx.needs = tuple(ctx.needs_input_grad[:3])
        loss, ctx.grads = call.forward(x, w, b, ctx.needs)
        ctx.swept = ctx.grads is not None
        # Released after backward unless retained; version-checked when used again.
        ctx.save_for_backward(x, w, b)
        return loss

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        """Scale the stored gradients by ``grad_output``, or sweep again with it."""
        call: FusedProblem | GenericProblem = ctx.call
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula itself
            return (*_double_backward(ctx, grad_output), None)
        x, w, b = ctx.saved_tensors
        if not ctx.swept:
            return (*call.backward(x, w, b, ctx.needs, grad_output), None)
        grads, ctx.grads = ctx.grads, None  # the caller owns them from here
        if grads is None:  # handed out by an earlier backward (retain_graph): sweep again
            _, grads = call.forward(x, w, b, ctx.needs)
        if bool(grad_output == 1):
            return (*grads, None)
        scaled = (None if g is None else scale_gradient(g, grad_output, True) for g in grads)
        return (*scaled, None)


def _double_backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
    inputs = ctx.saved_tensors
    wanted = [t for t, need in zip(inputs, ctx.needs, strict=True) if need]
    with torch.enable_grad():
        loss = ctx.call.differentiable(*inputs)
        grads = iter(torch.autograd.grad(loss, wanted, grad_output, create_graph=True))
    return tuple(next(grads) if need else None for need in ctx.needs)


@torch.compiler.disable  # the chunk loop runs eagerly inside a compiled model: one graph break
def run_fused(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    call: FusedProblem | GenericProblem,
    *others: Tensor | None,
) -> Tensor:
    """Dispatch one fused call: differentiable fallback, fused gradients, or loss only.

    ``others`` are the loss's other tensor inputs (targets, class weights, ``pos_weight``, ...).

    * one of ``others`` requires grad, or a ``torch.func`` transform runs: the unfused
      differentiable formula (gradients to all);
    * an input, weight or bias that requires grad under grad mode: :class:`FusedLinearLoss`;
    * otherwise (``no_grad``, inference): the loss alone, one matrix product per chunk.

    Under ``torch.compile`` the loop is not traced (data-dependent chunking, in-place kernel
    launches): the compiled model calls it as one opaque step.

    Returns the reduced loss, or the per-element losses for ``"none"``.
    """
    if takes_formula(*others):
        return call.differentiable(x, w, b)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return FusedLinearLoss.apply(x, w, b, call)
    detached = (x.detach(), w.detach(), None if b is None else b.detach())
    with torch.no_grad():
        return call.forward(*detached, (False, False, False))[0]
