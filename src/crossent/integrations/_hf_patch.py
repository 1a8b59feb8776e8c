"""The patched forward of a Hugging Face causal LM: its training loss from the hidden states.

The model's own forward still runs (its decoder call, ``logits_to_keep`` slicing, auxiliary
losses); for a training call with labels, its output layer is swapped, for that call only, for
one that computes the fused loss (:func:`crossent.linear_loss`) from the hidden states it is
given and returns them untouched, and ``model.loss_function`` hands that loss back to the
forward. The weight is read inside the output layer's own call, where sharding wrappers
(FSDP, DeepSpeed ZeRO-3) gather it. The returned output has no logits.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import crossent
from crossent.integrations._hf_tasks import TaskLoss, model_loss_function, shift_labels


@dataclass(frozen=True)
class FusedSettings:
    """What the fused loss is: registry spec, loss options and the chunking settings."""

    spec: str
    options: dict[str, Any]
    chunk_size: int | None
    accumulate_dtype: torch.dtype | None
    ignore_index: int
    logits_in_eval: bool


class PatchState:
    """What a patched model keeps: its class's forward, the settings and the pending loss."""

    def __init__(self, forward: Callable, settings: FusedSettings, task_loss: TaskLoss) -> None:
        self.forward = forward
        self.signature = inspect.signature(forward)
        self.settings = settings
        self.task_loss = task_loss
        self.logits_loss = model_loss_function(task_loss)
        self.pending: Tensor | None = None

    def loss_function(self, *args: Any, **kwargs: Any) -> Tensor:
        """``model.loss_function``: the fused loss of this call if computed, else from logits."""
        if self.pending is not None:
            loss, self.pending = self.pending, None
            return loss
        return self.logits_loss(*args, **kwargs)

    def arguments(self, model: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The call's arguments by name (positional ones named, ``**kwargs`` merged in)."""
        bound = self.signature.bind(model, *args, **kwargs).arguments
        call: dict[str, Any] = {}
        for name, value in list(bound.items())[1:]:
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                call.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                raise TypeError(f"Expected keyword arguments for `{name}`, but got positional ones")
            else:
                call[name] = value
        return call


def make_forward(forward: Callable) -> Callable:
    """The patched ``forward`` (same signature as the class's, for the Trainer's inspection)."""

    @functools.wraps(forward)
    def patched(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        state: PatchState = self._crossent_fused_loss
        call = state.arguments(self, args, kwargs)
        if call.get("labels") is None and call.get("shift_labels") is not None:
            call["labels"] = call["shift_labels"]  # the forward computes a loss only with labels
        logits_asked = not self.training and state.settings.logits_in_eval
        if call.get("labels") is None or logits_asked:
            return state.forward(self, **call)
        return _fused_call(self, state, call)

    return patched


def _fused_call(model: torch.nn.Module, state: PatchState, call: dict[str, Any]) -> Any:
    shifted = call.get("shift_labels")
    if shifted is None:
        shifted = shift_labels(call["labels"], state.settings.ignore_index)
    return_dict = call.pop("return_dict", None)
    if return_dict is None:
        return_dict = getattr(model.config, "return_dict", True)
    head = model.get_output_embeddings()
    keep, items = call.get("logits_to_keep", 0), call.get("num_items_in_batch")
    with _head_computes_loss(head, state, shifted, keep, items):
        out = state.forward(model, **call, return_dict=True)
        if state.pending is not None or out.get("loss") is None:
            raise RuntimeError(
                f"{type(model).__name__}.forward did not return the fused loss through "
                "model.loss_function"
            )
    out = type(out)(**{key: value for key, value in out.items() if key != "logits"})
    return out if return_dict else out.to_tuple()


@contextlib.contextmanager
def _head_computes_loss(
    head: torch.nn.Module,
    state: PatchState,
    target: Tensor,
    keep: int | Tensor,
    num_items_in_batch: Tensor | int | None,
) -> Iterator[None]:
    """For one call, ``head(hidden)`` stores the fused loss and returns ``hidden``."""
    previous = head.__dict__.get("forward")  # e.g. an accelerate device hook

    def forward(hidden: Tensor) -> Tensor:
        state.pending = fused_loss(hidden, head, target, keep, num_items_in_batch, state.settings)
        return hidden

    head.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous
        state.pending = None


def fused_loss(
    hidden: Tensor,
    head: torch.nn.Module,
    target: Tensor,
    keep: int | Tensor,
    num_items_in_batch: Tensor | int | None,
    settings: FusedSettings,
) -> Tensor:
    """``sum of linear_loss(hidden, W, target) / n`` with ``n`` as in :class:`TaskLoss`.

    Under autocast the hidden states, weight and bias are cast to the autocast dtype (what
    autocast does to the output layer's matrix product), and the loss runs outside autocast.
    """
    weight, bias = head.weight, head.bias
    target = kept_positions(target.to(weight.device), keep, hidden)
    x, device = hidden.to(weight.device), weight.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    with torch.autocast(device, enabled=False):
        total = crossent.linear_loss(
            x,
            weight,
            target,
            settings.spec,
            linear_bias=bias,
            reduction="sum",
            chunk_size=settings.chunk_size,
            accumulate_dtype=settings.accumulate_dtype,
            **settings.options,
        )
    if num_items_in_batch is None:
        return total / (target != settings.ignore_index).sum().clamp(min=1)
    if isinstance(num_items_in_batch, Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def kept_positions(target: Tensor, keep: int | Tensor, hidden: Tensor) -> Tensor:
    """The targets of the positions ``logits_to_keep`` keeps, checked against ``hidden``.

    As transformers' ``slice_logits_to_keep`` slices the hidden states: an int keeps the last
    positions (0: all), a 1-D tensor these positions, a 2-D integer tensor these positions per
    row, a 2-D boolean mask the ``True`` positions (flattened).
    """
    if target.shape != hidden.shape[:-1]:
        if isinstance(keep, Tensor) and keep.dim() == 2:
            target = target[keep] if keep.dtype == torch.bool else target.gather(1, keep)
        elif isinstance(keep, Tensor):
            target = target[:, keep]
        elif keep:
            target = target[:, -keep:]
    if target.shape != hidden.shape[:-1]:
        raise ValueError(
            f"Expected labels with one per position of the hidden states "
            f"{tuple(hidden.shape[:-1])}, but got shape {tuple(target.shape)}"
        )
    return target
