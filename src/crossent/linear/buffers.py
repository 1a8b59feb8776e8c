r"""The gradient buffers of the fused linear layer, filled one chunk of logits at a time.

For hidden states ``X`` ``(N, H)``, a weight ``W`` ``(K, H)`` and a bias ``b`` ``(K,)``, each
chunk ``c`` of logits ``Z_c = X_c W^T + b`` is turned into its gradient ``G_c`` by a loss and
back-propagated through the layer here:

.. math::

    \nabla_X[c] = G_c W, \qquad \nabla_W \mathrel{+}= G_c^T X_c, \qquad
    \nabla_b \mathrel{+}= \textstyle\sum_r G_c[r].

``grad_W`` is accumulated across chunks in ``accumulate_dtype`` (float32 by default: bf16
accumulation has made real training runs diverge, Liger issue 512, OLMo-core PR 370). A wider
accumulator is kept in row blocks of ``W`` so that converting it to the weight's dtype at the
end needs only one block of extra memory.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

# A float32 accumulator for a narrower weight is kept in this many row blocks of W.
ACC_BLOCKS = 4

Gradients = tuple[Tensor | None, Tensor | None, Tensor | None]


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


class WeightGradient:
    """``grad_W = sum_c G_c^T X_c`` over chunks, accumulated in ``dtype``.

    A wider accumulator than the weight is split into :data:`ACC_BLOCKS` row blocks, each
    converted and freed in turn at the end, so the conversion needs one block of extra memory
    (plus the final concatenation, no larger than the accumulator) instead of a second
    full-size gradient.
    """

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, weight: Tensor) -> None:
        k, h = shape
        self.out_dtype = weight.dtype
        blocks = 1 if dtype == weight.dtype else max(1, min(ACC_BLOCKS, k))
        step = max(1, -(-k // blocks))  # a weight of 0 rows: one empty block
        self.bounds = [(s, min(k, s + step)) for s in range(0, k, step)] or [(0, 0)]
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
    weight: WeightGradient | None
    bias: Tensor | None

    @classmethod
    def new(
        cls, x: Tensor, w: Tensor, needs: tuple[bool, bool, bool], dtype: torch.dtype
    ) -> GradientBuffers:
        """Buffers for the gradients of ``(X, W, b)`` in ``needs``; ``dtype`` accumulates W, b."""
        gx = torch.empty(x.shape, dtype=x.dtype, device=x.device) if needs[0] else None
        gw = WeightGradient((w.shape[0], w.shape[1]), dtype, w) if needs[1] else None
        gb = torch.zeros(w.shape[0], dtype=dtype, device=x.device) if needs[2] else None
        return cls(gx, gw, gb)

    def wanted(self) -> bool:
        """Whether any gradient is asked for."""
        return self.input is not None or self.weight is not None or self.bias is not None

    def add(self, g: Tensor, x: Tensor, w: Tensor, span: slice, bias: bool = True) -> None:
        """Back-propagate a chunk's logits gradient ``G_c`` ``(R, K)`` through the layer.

        ``grad_X[c] = G_c W``, ``grad_W += G_c^T X_c``, ``grad_b += sum_r G_c[r]`` (unless
        ``bias`` is False: the caller has added that sum itself).
        """
        if self.input is not None:
            torch.mm(g, w, out=self.input[span])
        if self.weight is not None:
            self.weight.add(g, x[span])
        if self.bias is not None and bias:
            self.bias += g.sum(0, dtype=self.bias.dtype)

    def result(self, b: Tensor | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The gradients of ``(X, W, b)`` in their parameters' dtypes."""
        grad_b = None if self.bias is None or b is None else self.bias.to(b.dtype)
        return self.input, None if self.weight is None else self.weight.result(), grad_b
