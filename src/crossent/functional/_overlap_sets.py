"""Input handling of the overlap losses: argument checks and the ``(N, L, K, S)`` layout.

:mod:`crossent.functional.overlap` holds the losses; this module turns logits and targets of any
``mode`` into log-probabilities and targets of ``L`` independent problems of ``K`` classes
over ``S`` pixels, with ignored pixels masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core import checks, config
from crossent.core.targets import (
    _check_index_values,
    check_input,
    scatter_value,
    warn_if_probabilities,
)

MODES = ("multiclass", "binary", "multilabel")


@dataclass(frozen=True)
class Sets:
    """Log-probabilities and targets in the layout ``(N, L, K, S)``.

    ``L`` independent problems (1, or the channels of ``multilabel``) of ``K`` classes each,
    ``S`` pixels per image; ``valid`` is ``(N, L or 1, 1, S)``, 1 where the target counts and 0
    where it is ``ignore_index``; ``g`` is already 0 there.
    """

    logp: Tensor
    g: Tensor
    valid: Tensor


def check_tversky_sum(alpha: float, beta: float) -> None:
    """The Tversky weights (each declared ``>= 0``) must not both be 0."""
    if alpha + beta == 0:
        raise checks.fail("alpha + beta", "> 0 (with both 0 the index is always 1)", alpha + beta)


def prepare(
    input: Tensor, target: Tensor, mode: str, ignore_index: int, *, background: bool
) -> Sets:
    """Log-probabilities and targets in the ``(N, L, K, S)`` layout of :class:`Sets`.

    For the sigmoid modes ``K`` is 2 (background, foreground) with ``background=True`` and 1
    (foreground only) otherwise.
    """
    input = check_input(input)
    checks.check_tensor("target", target)
    checks.check_devices(input, target=target)
    z = input.float() if input.dtype != torch.float64 else input
    if mode == "multiclass":
        return _prepare_multiclass(z, target, ignore_index)
    if mode == "multilabel" and input.dim() < 2:
        raise checks.fail("input", "to have shape (N, C, ...) with mode='multilabel'", input)
    squeezed = mode == "binary" and input.dim() >= 2 and input.shape[1] == 1
    if target.shape != input.shape and not (
        squeezed and target.shape == input.shape[:1] + input.shape[2:]
    ):
        raise ValueError(
            f"Expected `target` to have the shape of `input` {tuple(input.shape)} with "
            f"mode={mode!r}, but got {tuple(target.shape)}"
        )
    n = input.shape[0]
    channels = input.shape[1] if mode == "multilabel" else 1
    layout = (n, channels, 1, math.prod(input.shape[1:]) // max(channels, 1))
    z = z.reshape(layout)
    y = target.reshape(layout)
    valid = y != ignore_index
    y = torch.where(valid, y.to(z.dtype), 0.0)
    if config.validate_args():
        checks.check_unit_interval("target", y, f"in [0, 1] or ignore_index={ignore_index}")
    # log(1 - sigmoid(z)) = logsigmoid(-z)
    if background:
        logp = torch.cat([torch.nn.functional.logsigmoid(-z), torch.nn.functional.logsigmoid(z)], 2)
        g = torch.cat([1.0 - y, y], 2)
    else:
        logp, g = torch.nn.functional.logsigmoid(z), y
    valid_f = valid.to(z.dtype)
    return Sets(logp, g * valid_f, valid_f)


def _prepare_multiclass(z: Tensor, target: Tensor, ignore_index: int) -> Sets:
    if z.dim() < 2 or z.shape[1] < 2:
        raise checks.fail("input", "to have shape (N, K, d1, ..., dn) with K >= 2", z)
    warn_if_probabilities(z)
    n, k = z.shape[:2]
    pixels = math.prod(z.shape[2:])
    logp = torch.log_softmax(z, 1).reshape(n, 1, k, pixels)
    if target.is_floating_point():
        if target.shape != z.shape:
            raise ValueError(
                "Expected probability `target` to have the shape of `input` "
                f"{tuple(z.shape)}, but got {tuple(target.shape)}"
            )
        g = target.to(z.dtype).reshape(n, 1, k, pixels)
        return Sets(logp, g, torch.ones_like(g[:, :, :1]))
    if target.shape != z.shape[:1] + z.shape[2:]:
        raise ValueError(
            f"Expected class-index `target` of shape {tuple(z.shape[:1] + z.shape[2:])} for "
            f"`input` of shape {tuple(z.shape)}, but got {tuple(target.shape)}"
        )
    if config.validate_args():
        _check_index_values(target, k, ignore_index)
    index = target.reshape(n, 1, 1, pixels).long()
    valid = index != ignore_index
    g = scatter_value(torch.zeros_like(logp), 2, torch.where(valid, index, 0), 1.0)
    valid_f = valid.to(z.dtype)
    return Sets(logp, g * valid_f, valid_f)
