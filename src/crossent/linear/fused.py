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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent import kernels
from crossent.core.autograd import compute_dtype
from crossent.core.problem import EngineOptions, reduce_losses, reduction_scale
from crossent.core.targets import Targets
from crossent.engine.multiclass import differentiable_loss, forward_pass
from crossent.linear.buffers import GradientBuffers, Gradients, chunk_logits

# CPU (and devices without a memory query): every chunk streams the weight twice and reads and
# writes its gradient once (4 weight-sized transfers), so the time lost per chunk grows with
# K x H and few, large chunks are fast. The logits chunk may take the larger of 32 MiB and an
# eighth of the weight gradient the call allocates anyway. Measured (2 threads, fp32):
# 4096 x 2048 -> 32000: 256 rows (32 MiB) 12.8 s, 64 rows 17.6 s, PyTorch's chunked path 14.7 s
# (benchmarks/bench_linear.py); 1024 x 4096 -> 128256: 512 rows (250 MiB, the eighth) 28.1 s,
# 128 rows (the 32 MiB rule) 37.9 s (a probe timing linear_cross_entropy(chunk_size=...)).
CPU_CHUNK_BYTES = 32 << 20
CPU_WEIGHT_FRACTION = 8
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

    def traced(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The fused call as ``torch.compile`` traces it (:mod:`crossent.linear.compiled`)."""
        from crossent.linear.compiled import CompiledFusedLoss

        return CompiledFusedLoss.apply(x, w, b, self)

    def differentiable(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The unfused loss written with differentiable operations (materialises the logits).

        Used when a probability target requires grad and for double backward; returns what
        the fused call returns (reduced loss, or ``(N, D)`` losses for ``"none"``).
        """
        z = torch.nn.functional.linear(x, w, b)
        z = z.view(x.shape[0], self.num_classes, self.positions)
        losses = differentiable_loss(z, self.targets, self.opts)
        return reduce_losses(losses, self.targets, self.reduction)


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


def _free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (host: ``MemAvailable``), or ``None`` where not asked.

    Not asked while ``torch.compile`` traces: the query is a host call the compiler cannot
    put in a graph, and a compiled graph is reused while the free memory changes.
    """
    if torch.compiler.is_compiling():
        return None
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return _available_ram()


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
    ``MemAvailable`` on the host), except while ``torch.compile`` traces. The rows are then
    balanced over the chunks that budget needs and rounded up to a multiple of 64; the
    result is in ``[1, N]``.
    """
    row_bytes = max(1, classes * dtype.itemsize)
    if device.type == "cuda":
        if accumulate_dtype.itemsize > weight_dtype.itemsize:
            accumulator = classes * hidden * accumulate_dtype.itemsize
            budget = max(accumulator * 2 // 5, n * row_bytes // 4)
        else:
            budget = n * hidden * dtype.itemsize
    else:
        gradient = classes * hidden * accumulate_dtype.itemsize
        budget = max(CPU_CHUNK_BYTES, gradient // CPU_WEIGHT_FRACTION)
    free = _free_memory(device)
    if free is not None:
        budget = min(budget, free // 4)
    rows = max(1, min(n, budget // row_bytes))
    chunks = -(-n // rows) if n else 1
    rows = -(-n // chunks) if n else 1  # balanced: the last chunk is not a sliver
    if rows >= _ROW_MULTIPLE:
        rows = min(n, -(-rows // _ROW_MULTIPLE) * _ROW_MULTIPLE)
    return rows


def chunk_targets(targets: Targets, rows: slice) -> Targets:
    """The rows ``rows`` of prepared targets (the ``mean`` denominator stays the batch's)."""
    return Targets(
        None if targets.index is None else targets.index[rows],
        None if targets.probs is None else targets.probs[rows],
        targets.valid[rows],
        None if targets.elem_weight is None else targets.elem_weight[rows],
        targets.denominator,
    )


ChunkLoss = Callable[[Tensor, slice, bool, Tensor | None], Tensor]


def _chunk_loss_fn(
    problem: FusedProblem, dtype: torch.dtype, device: torch.device
) -> tuple[ChunkLoss, bool]:
    """The function that turns a chunk of logits ``(R, C*D)`` into its gradient, in place.

    It is called as ``f(logits, rows, want_grad, column_sums)`` and returns the chunk's
    per-element losses ``(R, D)``. The Triton template's fused entry point serves CUDA
    tensors (class ``D = 1`` layouts, terms it knows); the engine serves everything else and
    adds the gradient's sum over rows, in the compute dtype, to ``column_sums`` ``(C, D)``
    when given. The flag says whether the function does (the engine) or ignores it.
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

        def kernel_chunk(
            logits: Tensor, rows: slice, want_grad: bool, column_sums: Tensor | None
        ) -> Tensor:
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

        return kernel_chunk, False

    def engine_chunk(
        logits: Tensor, rows: slice, want_grad: bool, column_sums: Tensor | None
    ) -> Tensor:
        z = logits.view(logits.shape[0], c, d)
        targets = chunk_targets(problem.targets, rows)
        losses, _ = forward_pass(z, targets, problem.opts, want_grad, column_sums)
        return losses

    return engine_chunk, True


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
    """The chunk loop of :func:`fused_pass`, filling ``losses`` and ``grads`` in place.

    For half logits the engine sums the bias gradient from each chunk's float32 gradient,
    before it is rounded (a gradient scaled by ``1/N`` is often below half precision's
    normal range); the Triton path and the per-row scaling of ``reduction="none"`` sum the
    chunk's gradient buffer in the accumulation dtype.
    """
    want_grad = grads.wanted()
    chunk_loss, sums_columns = _chunk_loss_fn(problem, x.dtype, x.device)
    exact_bias = (
        sums_columns
        and grads.bias is not None
        and row_scale is None
        and x.dtype != compute_dtype(x.dtype)
    )
    c, d = problem.num_classes, problem.positions
    column_sums = grads.bias.view(c, d) if exact_bias else None
    for span, logits in chunk_logits(x, w, b, rows):
        losses[span] = chunk_loss(logits, span, want_grad, column_sums)
        if not want_grad:
            continue
        if row_scale is not None:
            logits.view(logits.shape[0], c, d).mul_(row_scale[span].unsqueeze(1))
        grads.add(logits, x, w, span, bias=not exact_bias)


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
