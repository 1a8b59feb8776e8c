"""Target handling for the engine: validation, layout, smoothing, per-element weights.

Everything here is computed on tensors the size of the *target* (``N * d1 ... dn``), never
the size of the logits, so it can run before the chunked pass over the logits.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from crossent.core import checks, config
from crossent.core.autograd import compute_dtype
from crossent.core.checks import fail
from crossent.core.span import MAX_SPAN_SMOOTHING, span_smoothed_targets
from crossent.core.term import Term

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # crossent/
_LIBRARY_DIRS = (_PACKAGE_DIR, str(Path(torch.__file__).resolve().parent))
_PROBE_ROWS = 64


class ProbabilityInputWarning(UserWarning):
    """Logits that look like probabilities were passed to a loss (the double-softmax bug)."""


@dataclass(frozen=True)
class Targets:
    """Prepared targets of one call, in the ``(N, K, D)`` layout of the engine.

    Attributes:
        index: ``(N, D)`` int64 class indices with ignored entries replaced by 0, or ``None``
            for probability targets.
        probs: ``(N, K, D)`` probability targets (un-smoothed), or ``None``.
        valid: ``(N, D)`` bool, ``False`` where the target is ``ignore_index``.
        elem_weight: ``(N, D)`` multiplier of each element's loss for class-index targets:
            ``weight[t] * class_scale[t]`` (0 where ignored); ``None`` for probabilities.
        denominator: scalar tensor the ``mean`` reduction divides by.
        span: ``(N, K, D)`` span-smoothed target distribution of class-index targets along a
            sequence (``smoothing="span"``, :mod:`crossent.core.span`), or ``None``.
    """

    index: Tensor | None
    probs: Tensor | None
    valid: Tensor
    elem_weight: Tensor | None
    denominator: Tensor
    span: Tensor | None = None


def caller_stacklevel() -> int:
    """Stack level of the first frame outside crossent and torch (for warnings).

    torch's frames are skipped too, so a loss module called through ``Module.__call__``
    reports the line of the user's code, not a line inside torch.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    return level


def warn_if_probabilities(input: Tensor) -> None:
    """Warn once per call site when the first rows of ``input`` look like probabilities.

    "Once per call site" is Python's default warning filter (the call site is the first line
    outside crossent and torch); a filter set to ``"always"`` shows every occurrence.

    Only ``min(N, 64)`` rows are probed, so the check costs nothing next to the loss; it never
    changes the result and :func:`crossent.set_probability_warning` turns it off.
    """
    if input.dim() == 1:  # unbatched (K,): one row
        input = input.unsqueeze(0)
    if not config.warn_probabilities() or input.dim() < 2 or input.shape[1] < 2:
        return
    with torch.no_grad():
        probe = input.detach()[:_PROBE_ROWS]
        if probe.numel() == 0:
            return
        probe = probe.reshape(probe.shape[0], probe.shape[1], -1)[..., :_PROBE_ROWS]
        # Logits almost always have a negative entry in their first row: one cheap look.
        low, high = torch.aminmax(probe[0, :, 0])
        if bool(low < 0) or bool(high > 1):
            return
        probe = probe.float()
        in_range = bool(((probe >= 0) & (probe <= 1)).all())
        sums_to_one = in_range and bool(((probe.sum(1) - 1).abs() <= 1e-3).all())
    if sums_to_one:
        warnings.warn(
            "The loss received inputs whose rows are in [0, 1] and sum to 1: they look like "
            "probabilities. crossent losses take logits (unnormalised scores); applying "
            "softmax twice flattens the loss. Pass the logits, or silence this with "
            "crossent.set_probability_warning(False).",
            ProbabilityInputWarning,
            stacklevel=caller_stacklevel(),
        )


def check_input(input: object) -> Tensor:
    """Check the logits: a floating tensor with at least one dimension."""
    input = checks.check_tensor("input", input)
    checks.check_floating("input", input)
    if input.dim() == 0:
        raise fail("input", "to have shape (C,), (N, C) or (N, C, d1, ..., dn)", input)
    return input


def as_batch(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Unbatched ``(C,)`` logits and their target as a batch of one; whether they were unbatched.

    The target of ``(C,)`` logits is a class index ``()`` or probabilities ``(C,)``; as in
    PyTorch, a class index of shape ``(1,)`` is taken too (the loss is then 0-dim as well).
    Batched inputs pass through unchanged.
    """
    if input.dim() != 1:
        return input, target, False
    if target.is_floating_point():
        if target.shape != input.shape:
            expected = f"to have shape {tuple(input.shape)} (probabilities) for input of shape (C,)"
            raise fail("target", expected, tuple(target.shape))
    elif target.shape == (1,):
        target = target.reshape(())
    elif target.dim() != 0:
        expected = "to have shape () or (1,) (a class index) for input of shape (C,)"
        raise fail("target", expected, tuple(target.shape))
    return input.unsqueeze(0), target.unsqueeze(0), True


def promote_to_target(input: Tensor, target: Tensor) -> Tensor:
    """``input`` cast up to float64 when ``target`` is float64, as PyTorch promotes the loss.

    PyTorch's losses return ``promote_types(input, target)``: float32 (or half) logits with
    float64 targets give a float64 loss. Computing in float64 gives that dtype and at least
    PyTorch's precision; the gradient still reaches ``input`` in its own dtype. Any other
    pair keeps the input's compute dtype (half logits with float32 targets: float32, as
    PyTorch gives).
    """
    if target.dtype == torch.float64 and input.dtype != torch.float64:
        return input.to(torch.float64)
    return input


#: The label-smoothing conventions: ``eps/K`` to every class, ``eps/(K-1)`` to every other
#: class, or along a sequence to the tags of a token's differing neighbours
#: (:mod:`crossent.core.span`).
SMOOTHINGS = ("uniform", "others", "span")


def check_smoothing(label_smoothing: object, smoothing: object, num_classes: int) -> float:
    """Check ``label_smoothing`` in [0, 1] and the ``smoothing`` convention for ``K`` classes."""
    eps = checks.check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    checks.check_choice("smoothing", smoothing, SMOOTHINGS)
    if smoothing == "span" and eps > MAX_SPAN_SMOOTHING:
        raise fail(
            "label_smoothing",
            f"in [0, {MAX_SPAN_SMOOTHING}] with smoothing='span' (beyond it a boundary token's "
            "neighbour tag outweighs its own)",
            eps,
        )
    if smoothing == "others" and eps > 0:
        if num_classes < 2:
            raise fail(
                "smoothing", f"'uniform' with fewer than 2 classes (K = {num_classes})", smoothing
            )
        limit = (num_classes - 1) / num_classes
        if eps > limit + 1e-12:
            raise fail(
                "label_smoothing",
                f"<= (K-1)/K = {limit:.6g} with smoothing='others' (beyond it the true class "
                "gets less than each other class)",
                eps,
            )
    return eps


def _check_index_values(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise naming the first class index outside ``[0, K)`` that is not ``ignore_index``."""
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bool(bad.any()):
        position = int(bad.reshape(-1).nonzero()[0, 0])
        value = int(target.reshape(-1)[position])
        if value < 0:
            expected = (
                f"class indices in [0, {num_classes}) or ignore_index={ignore_index} "
                f"(negative index {value} at flat position {position} is not ignore_index)"
            )
        else:
            expected = (
                f"class indices in [0, {num_classes}) or ignore_index={ignore_index} "
                f"(index {value} at flat position {position} is out of range)"
            )
        raise ValueError(f"Expected `target` {expected}, but got {value}")


def _validate_indices(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Class indices in range: a ``ValueError`` eagerly, a device assert under compile."""
    if config.validate_args():
        _check_index_values(target, num_classes, ignore_index)
    elif config.device_assertions():  # no host sync while torch.compile traces
        ok = ((target >= 0) & (target < num_classes)) | (target == ignore_index)
        torch._assert_async(ok.all(), "crossent: a class index of `target` is out of range")


def prepare_targets(
    input: Tensor,
    target: object,
    weight: Tensor | None,
    class_scale: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
    smoothing: str,
) -> Targets:
    """Validate ``target`` against ``input`` (already ``(N, K, ...)``) and prepare it.

    Raises:
        TypeError: target is not a tensor, or has a dtype that is neither integer nor float.
        ValueError: shape mismatch, class index out of range, ``smoothing='others'`` with
            probability targets.
    """
    target = checks.check_tensor("target", target)
    n, k = input.shape[0], input.shape[1]
    if target.is_floating_point():
        if target.shape != input.shape:
            raise fail(
                "target",
                f"to have the shape of `input` {tuple(input.shape)} for probability targets",
                target,
            )
        if smoothing in ("others", "span") and label_smoothing > 0:
            raise fail("smoothing", "'uniform' for probability targets", smoothing)
        if ignore_index >= 0:  # PyTorch rejects these and ignores a negative one
            raise fail(
                "ignore_index",
                "to be negative (unused) for probability targets, as in PyTorch",
                ignore_index,
            )
        probs = target.reshape(n, k, math.prod(input.shape[2:]))
        valid = torch.ones(n, probs.shape[2], dtype=torch.bool, device=input.device)
        denominator = torch.tensor(float(n * probs.shape[2]), device=input.device)
        return Targets(None, probs, valid, None, denominator)
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            "Expected `target` to be integer class indices or float probabilities, "
            f"but got {target.dtype}"
        )
    expected_shape = (n, *input.shape[2:])
    if tuple(target.shape) != expected_shape:
        err = fail("target", f"to have shape {expected_shape} for class-index targets", target)
        hint = _class_dim_hint(input, target)
        raise (type(err)(f"{err}. {hint}") if hint else err)
    target = target.to(device=input.device, dtype=torch.int64)
    _validate_indices(target, k, ignore_index)
    span = _span_targets(input, target, ignore_index, label_smoothing, smoothing)
    index = target.reshape(n, math.prod(input.shape[2:]))
    valid = index != ignore_index
    index = torch.where(valid, index, torch.zeros_like(index))
    elem_weight = valid.to(compute_dtype(input.dtype))
    denominator = elem_weight.sum()
    if weight is not None:
        w_t = weight.to(elem_weight.dtype)[index]
        elem_weight = elem_weight * w_t
        denominator = elem_weight.sum()
    if class_scale is not None:
        elem_weight = elem_weight * class_scale.to(elem_weight.dtype)[index]
    return Targets(index, None, valid, elem_weight, denominator, span)


def _span_targets(
    input: Tensor, target: Tensor, ignore_index: int, label_smoothing: float, smoothing: str
) -> Tensor | None:
    """``(N, K, T)`` span-smoothed targets of ``(N, T)`` tags, or ``None`` (other smoothing).

    Span smoothing needs a sequence: logits ``(N, K, T)`` and class indices ``(N, T)`` (the
    layout of PyTorch's K-dimensional losses; ``(B, T, K)`` logits are ``.transpose(1, 2)``).
    """
    if smoothing != "span" or label_smoothing == 0:
        return None
    if input.dim() != 3:
        raise fail(
            "smoothing",
            "'uniform' or 'others' here: 'span' smooths along a sequence and needs logits "
            f"(N, K, T) with class indices (N, T), but `input` has shape {tuple(input.shape)}; "
            "it is not defined for per-sample targets",
            smoothing,
        )
    span = span_smoothed_targets(
        target, input.shape[1], label_smoothing, ignore_index=ignore_index,
        dtype=compute_dtype(input.dtype),
    )  # fmt: skip
    return span.transpose(1, 2).contiguous()


def _class_dim_hint(input: Tensor, target: Tensor) -> str:
    """A hint for ``(B, T, K)`` logits with ``(B, T)`` targets (classes last, not in dim 1)."""
    if input.dim() < 3 or tuple(target.shape) != tuple(input.shape[:-1]):
        return ""
    k = input.shape[-1]
    return (
        f"The class dimension of `input` is dim 1, as in PyTorch: for logits "
        f"{tuple(input.shape)} with {k} classes last, pass `input.transpose(1, 2)`, or "
        f"flatten both (`input.reshape(-1, {k})`, `target.reshape(-1)`)"
    )


def divide_or_zero(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, and 0 where the denominator is 0.

    The ``mean`` reduction's convention when every target is ignored or weighs 0 (PyTorch
    gives NaN there). The division never sees a 0, so a gradient through it (class weights
    that require grad) is 0 there too, never ``0 * inf``.
    """
    zero = denominator == 0
    quotient = numerator / torch.where(zero, torch.ones_like(denominator), denominator)
    return torch.where(zero, torch.zeros_like(quotient), quotient)


def scatter_value(base: Tensor, dim: int, index: Tensor, value: float) -> Tensor:
    """``base.scatter_(dim, index, value)``, out of place under a ``torch.func`` transform.

    ``vmap`` has no batching rule for scattering a batched index into a tensor made inside the
    transform (unbatched) in place; eager calls keep the in-place scatter (no copy).
    """
    if config.transforms_active():
        return base.scatter(dim, index, value)
    return base.scatter_(dim, index, value)


def smoothing_levels(eps: float, smoothing: str, num_classes: int) -> tuple[float, float]:
    """``(off, on)``: the smoothed one-hot target's value off and on the true class."""
    if smoothing == "others" and num_classes > 1:
        return eps / (num_classes - 1), 1.0 - eps
    return eps / num_classes, 1.0 - eps + eps / num_classes


def smoothed_target_chunk(
    targets: Targets,
    rows: slice,
    cols: slice,
    num_classes: int,
    label_smoothing: float,
    smoothing: str,
    dtype: torch.dtype,
) -> Tensor:
    """The target distribution ``P`` of one chunk, ``(R, K, Dc)`` in ``dtype``.

    * class indices, ``"uniform"``: ``P = (1-eps) onehot(t) + eps/K``;
    * class indices, ``"others"``: ``P = 1-eps`` on ``t``, ``eps/(K-1)`` elsewhere;
    * probabilities: ``P = (1-eps) P + eps/K`` (PyTorch);
    * class indices along a sequence, ``"span"``: the prepared span-smoothed ``P``.
    """
    eps = label_smoothing
    if targets.span is not None:
        return targets.span[rows, :, cols].to(dtype)
    if targets.probs is not None:
        p = targets.probs[rows, :, cols].to(dtype)
        return p * (1 - eps) + eps / num_classes if eps > 0 else p
    index = targets.index[rows, cols].unsqueeze(1)
    r, dc = index.shape[0], index.shape[2]
    off, on = smoothing_levels(eps, smoothing, num_classes)
    p = torch.full((r, num_classes, dc), off, dtype=dtype, device=index.device)
    return scatter_value(p, 1, index, on)


def check_log_target(term: Term, probs: Tensor | None) -> None:
    """A term that reads ``log P`` (reverse CE) needs probability targets ``>= 0``."""
    if probs is None or not term.takes_log_of_target() or not config.validate_args():
        return
    if bool((probs < 0).any()):
        raise checks.fail("target", "probabilities >= 0 (this loss reads log P)", probs)
