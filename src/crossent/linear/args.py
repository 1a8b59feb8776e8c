"""The fused linear functions' arguments, checked and put in the chunk loop's layout.

The linear layer's tensors (``input`` ``(*batch, H)``, ``linear_weight`` ``(C, *out, H)``,
``linear_bias`` ``(C, *out)``) are flattened to ``(N, H)``, ``(C*D, H)``, ``(C*D,)``; the
target to class indices ``(N, *out)`` or probabilities ``(N, C, *out)``; ``chunk_size``,
``accumulate_dtype`` and PyTorch's ``LinearCrossEntropyOptions`` are checked. Used by
:mod:`crossent.linear` and :mod:`crossent.linear.generic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.core.checks import fail


@dataclass(frozen=True)
class LinearLayout:
    """The linear layer's tensors flattened to the chunk loop's layout.

    ``x`` ``(N, H)``, ``w`` ``(C*D, H)``, ``b`` ``(C*D,)``; ``batch`` the batch dims of
    ``input`` (``N`` is their product); ``logits_shape`` ``(N, C, *out)``.
    """

    x: Tensor
    w: Tensor
    b: Tensor | None
    batch: tuple[int, ...]
    logits_shape: tuple[int, ...]


def _check_operands(input: object, linear_weight: object, linear_bias: object) -> None:
    """Types, dtypes, devices and shapes of the linear layer's tensors."""
    input = checks.check_tensor("input", input)
    checks.check_floating("input", input)
    if input.dim() == 0:
        raise fail("input", "to have shape (H,) or (N, H) (hidden states)", input)
    tensors = {"linear_weight": linear_weight, "linear_bias": linear_bias}
    for name, t in tensors.items():
        if t is None:
            continue
        t = checks.check_tensor(name, t)
        if t.dtype != input.dtype:
            raise TypeError(
                f"Expected `{name}` to have the dtype of `input` ({input.dtype}), but got {t.dtype}"
            )
        if t.device != input.device:
            raise fail(name, f"on the device of `input` ({input.device})", t.device)
    w = linear_weight
    if w.dim() < 2:
        raise fail("linear_weight", "to have shape (C, H) or (C, d1, ..., dn, H)", w)
    if w.shape[-1] != input.shape[-1]:
        raise fail(
            "linear_weight",
            f"to have last dimension H = {input.shape[-1]} (that of `input`)",
            tuple(w.shape),
        )
    if w.dim() > 2 and input.dim() != 2:
        raise fail("input", "to have shape (N, H) with a K-dimensional linear_weight", input)
    if linear_bias is not None and linear_bias.shape != w.shape[:-1]:
        raise fail("linear_bias", f"to have shape {tuple(w.shape[:-1])}", tuple(linear_bias.shape))


def flatten_operands(
    input: Tensor, linear_weight: Tensor, linear_bias: Tensor | None
) -> LinearLayout:
    """Check the linear layer's tensors and flatten them for the chunk loop."""
    _check_operands(input, linear_weight, linear_bias)
    batch = tuple(input.shape[:-1])
    classes, out = linear_weight.shape[0], tuple(linear_weight.shape[1:-1])
    n, hidden = math.prod(batch), input.shape[-1]
    return LinearLayout(
        input.reshape(n, hidden),
        linear_weight.reshape(-1, hidden) if out else linear_weight,
        None if linear_bias is None else linear_bias.reshape(-1),
        batch,
        (n, classes, *out),
    )


def flatten_target(layout: LinearLayout, target: object) -> Tensor:
    """Class indices ``(*batch, *out)`` or probabilities ``(*batch, C, *out)``, flattened."""
    target = checks.check_tensor("target", target)
    checks.check_devices(layout.x, target=target)
    n, classes, *out = layout.logits_shape
    batch = layout.batch
    index_shape, prob_shape = (*batch, *out), (*batch, classes, *out)
    expected = prob_shape if target.is_floating_point() else index_shape
    if tuple(target.shape) != expected:
        kind = "probabilities" if target.is_floating_point() else "class indices"
        raise ValueError(
            f"Expected `target` to have shape {index_shape} (class indices, an integer dtype) "
            f"or {prob_shape} (probabilities, a floating dtype) for input "
            f"{(*batch, layout.x.shape[1])} and linear_weight "
            f"{(classes, *out, layout.x.shape[1])}, but got shape {tuple(target.shape)} of "
            f"dtype {target.dtype} (read as {kind})"
        )
    return target.reshape(n, *expected[len(batch) :])


def check_accumulate_dtype(accumulate_dtype: object, weight_dtype: torch.dtype) -> torch.dtype:
    """``None`` -> float32 (float64 for float64 weights); else float32, float64 or the weight's."""
    if accumulate_dtype is None:
        return compute_dtype(weight_dtype)
    if not isinstance(accumulate_dtype, torch.dtype):
        raise TypeError(
            f"Expected `accumulate_dtype` to be a torch.dtype or None, but got {accumulate_dtype!r}"
        )
    allowed = {weight_dtype} | {
        d for d in (torch.float32, torch.float64) if d.itemsize >= weight_dtype.itemsize
    }
    if accumulate_dtype not in allowed:
        raise fail(
            "accumulate_dtype",
            f"to be None, the weight's dtype ({weight_dtype}) or a wider float "
            f"({', '.join(sorted(str(d) for d in allowed))})",
            accumulate_dtype,
        )
    return accumulate_dtype


def check_chunk_size(chunk_size: object) -> int | None:
    """``None`` (chosen from the shapes and free memory) or a positive number of rows."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"Expected `chunk_size` to be an int or None, but got {chunk_size!r}")
    if chunk_size < 1:
        raise fail("chunk_size", ">= 1 (rows per chunk)", chunk_size)
    return chunk_size


def from_torch_options(
    options: object, chunk_size: int | None, accumulate_dtype: object
) -> tuple[int | None, object]:
    """Honour PyTorch's ``LinearCrossEntropyOptions`` (chunk rows, accumulation dtype)."""
    if options is None:
        return chunk_size, accumulate_dtype
    options_type = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if options_type is None or not isinstance(options, options_type):
        raise TypeError(
            "Expected `options` to be None or a torch.nn.LinearCrossEntropyOptions, "
            f"but got {type(options).__name__}"
        )
    if chunk_size is None:
        chunk_size = options.batch_chunk_size
    if accumulate_dtype is None:
        accumulate_dtype = options.acc_dtype
    return chunk_size, accumulate_dtype
