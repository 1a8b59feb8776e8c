r"""A registry loss on a Hugging Face model's logits, per task, normalised as the Trainer expects.

For every task but sequence classification with an overlap loss, the loss of a micro-batch is

.. math::

    L = \frac{1}{n} \sum_{i \,:\, y_i \neq \text{ignore}} \ell(z_i, y_i),

with ``n = num_items_in_batch`` when the Trainer gives it (the non-ignored targets of every
micro-batch of the accumulated step, shifted for causal LMs), else the non-ignored targets of
this micro-batch (at least 1). Summed over the micro-batches of a step this is the mean over
the step's items, which is why the Trainer does not divide it by the accumulation steps.
With class weights ``w``, ``\ell`` is the weighted term and ``n`` still counts items (as
transformers' own losses). Float multi-label targets count every element as an item (as the
Trainer counts them).

Overlap losses (Dice, Tversky, ...) do not decompose over items: for sequence classification a
micro-batch's loss is the loss's own value times ``items / num_items_in_batch`` (so the step's
loss is the item-weighted mean of the micro-batch losses, not the loss of the whole step);
token and language-model tasks refuse them.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import crossent
from crossent import registry

TASKS = ("sequence_classification", "token_classification", "causal_lm", "masked_lm")
#: transformers' ``model.loss_type`` -> the task of :class:`TaskLoss`.
LOSS_TYPES = {
    "ForSequenceClassification": "sequence_classification",
    "ForTokenClassification": "token_classification",
    "ForCausalLM": "causal_lm",
    "ForMaskedLM": "masked_lm",
}
_REFUSED_KINDS = {
    "log_probs": "it takes log-probabilities and the model gives logits (use 'ce')",
    "distillation": "it takes a teacher's logits, which the Trainer does not pass",
}


def shift_labels(labels: Tensor, ignore_index: int = -100) -> Tensor:
    """``labels[..., 1:]`` padded with ``ignore_index``: position ``t`` predicts token ``t+1``.

    As transformers' ``ForCausalLMLoss`` and the Trainer's count of ``num_items_in_batch``.
    """
    return F.pad(labels, (0, 1), value=ignore_index)[..., 1:]


def loss_kind(module: torch.nn.Module) -> str:
    """The registry kind (:data:`crossent.registry.KINDS`) of a :mod:`crossent.nn` module."""
    for name in registry.available_losses():
        try:
            cls = registry.loss_class(name)
        except NotImplementedError:
            continue
        if isinstance(module, cls):
            return registry.loss_kind(name)
    raise TypeError(
        "Expected `spec` to be a registry spec string or a crossent.nn loss module, but got "
        f"{type(module).__module__}.{type(module).__name__}"
    )


def build_loss(spec: object, options: dict[str, Any]) -> tuple[torch.nn.Module, str]:
    """The loss module of ``spec`` (string or module) and its registry kind.

    Raises:
        ValueError: when the spec or ``options`` set ``reduction``: the normalisation is the
            Trainer's.
        TypeError: for a spec that is neither, or options given with a module.
    """
    if "reduction" in options:
        raise _reduction_error(options["reduction"])
    if isinstance(spec, str):
        module = crossent.get_loss(spec, **options)
    elif isinstance(spec, torch.nn.Module):
        if options:
            raise TypeError(
                f"Expected no loss options with a loss module (they belong in its constructor), "
                f"but got {', '.join(options)}"
            )
        module = spec
    else:
        raise TypeError(
            'Expected `spec` to be a registry spec string such as "focal(gamma=2)" or a '
            f"crossent.nn loss module, but got {type(spec).__name__}"
        )
    kind = loss_kind(module)
    if getattr(module, "reduction", "mean") != "mean":
        raise _reduction_error(module.reduction)
    return module, kind


def _reduction_error(value: object) -> ValueError:
    return ValueError(
        f"Expected the loss to keep its default reduction 'mean', but got reduction={value!r}: "
        "the reduction is the Trainer's (sum over items / num_items_in_batch)"
    )


class TaskLoss:
    """``loss(logits, labels, num_items_in_batch, shift_labels)`` for one task (module docstring).

    Args:
        spec: registry spec string or :mod:`crossent.nn` module (its reduction left 'mean').
        task: one of :data:`TASKS`.
        options: the loss's keyword arguments (with a spec string only).
    """

    def __init__(self, spec: object, task: str, options: dict[str, Any]) -> None:
        if task not in TASKS:
            allowed = ", ".join(repr(t) for t in TASKS)
            raise ValueError(f"Expected `task` to be one of {allowed}, but got {task!r}")
        module, kind = build_loss(spec, options)
        _check_kind(kind, task, spec)
        self.task, self.kind = task, kind
        self.ignore_index = getattr(module, "ignore_index", -100)
        if kind != "overlap":
            module = copy.copy(module)
            module.reduction = "sum"
        self.module = module

    def __call__(
        self,
        logits: Tensor,
        labels: Tensor | None,
        num_items_in_batch: Tensor | int | None = None,
        shift_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of one micro-batch (see the module docstring)."""
        target = self._target(labels, shift_labels, logits.device)
        if self.task == "sequence_classification":
            logits, target = self._sequence_operands(logits, target)
        else:
            logits, target = _token_operands(logits, target, self.task)
        if target.is_floating_point():
            items = torch.tensor(target.numel(), device=target.device)
        else:
            items = (target != self.ignore_index).sum()
        loss = self.module(logits, target)
        if num_items_in_batch is None:
            return loss if self.kind == "overlap" else loss / items.clamp(min=1)
        if isinstance(num_items_in_batch, Tensor):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        if self.kind == "overlap":
            return loss * items / num_items_in_batch
        return loss / num_items_in_batch

    def _target(
        self, labels: Tensor | None, shifted: Tensor | None, device: torch.device
    ) -> Tensor:
        if self.task == "causal_lm" and shifted is not None:
            return shifted.to(device)
        if labels is None:
            raise ValueError(
                f"Expected `labels` for the {self.task} loss, but got None (the batch has no "
                "'labels' column, or the collator did not make them)"
            )
        if self.task == "causal_lm":
            return shift_labels(labels.to(device), self.ignore_index)
        return labels.to(device)

    def _sequence_operands(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "binary":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"Expected multi-label `labels` shaped like the logits {tuple(logits.shape)} "
                    f"for the binary loss, but got shape {tuple(labels.shape)}"
                )
            return logits, labels.to(logits.dtype)
        if self.kind == "overlap":
            return logits, labels
        if labels.is_floating_point():
            raise ValueError(
                f"Expected integer class labels for {type(self.module).__name__}, but got "
                f"{labels.dtype} labels of shape {tuple(labels.shape)}: float labels are "
                "multi-label targets, which take a binary loss such as 'bce' or 'sigmoid_focal'"
            )
        if logits.shape[-1] == 1:
            raise ValueError(
                "Expected logits with at least 2 classes, but got 1 (num_labels=1 is regression "
                "in transformers, not a classification loss)"
            )
        return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)


def _check_kind(kind: str, task: str, spec: object) -> None:
    label = spec if isinstance(spec, str) else type(spec).__name__
    if kind in _REFUSED_KINDS:
        raise ValueError(f"The loss {label!r} cannot train a {task} model: {_REFUSED_KINDS[kind]}")
    if task == "sequence_classification":
        return
    if kind == "overlap":
        raise ValueError(
            f"The overlap loss {label!r} does not decompose over tokens, so it cannot be summed "
            f"over items and divided by num_items_in_batch for the {task} task (gradient "
            "accumulation would change the loss); use it for sequence classification, or "
            "choose a multiclass loss"
        )
    if kind == "binary":
        raise ValueError(
            f"The binary loss {label!r} takes multi-label targets; the {task} task has class "
            "indices (use a multiclass loss such as 'ce' or 'focal')"
        )


def _token_operands(logits: Tensor, target: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Flatten ``(..., V)`` logits and ``(...)`` targets to ``(N, V)`` and ``(N,)``."""
    if logits.shape[:-1].numel() != target.numel() or target.is_floating_point():
        raise ValueError(
            f"Expected {task} labels of class indices with one per position of the logits "
            f"{tuple(logits.shape)}, but got {target.dtype} labels of shape "
            f"{tuple(target.shape)}"
        )
    return logits.reshape(-1, logits.shape[-1]), target.reshape(-1)


# transformers' loss_function signatures (transformers/loss/loss_utils.py), per loss type.
def _causal(
    loss: TaskLoss,
    logits: Tensor,
    labels: Tensor,
    vocab_size: int | None = None,
    num_items_in_batch: Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: Tensor | None = None,
    **kwargs: Any,
) -> Tensor:
    return loss(logits, labels, num_items_in_batch, shift_labels)


def _masked(
    loss: TaskLoss,
    logits: Tensor,
    labels: Tensor,
    vocab_size: int | None = None,
    num_items_in_batch: Tensor | int | None = None,
    ignore_index: int = -100,
    **kwargs: Any,
) -> Tensor:
    return loss(logits, labels, num_items_in_batch)


def _token(
    loss: TaskLoss,
    logits: Tensor,
    labels: Tensor,
    config: object = None,
    num_items_in_batch: Tensor | int | None = None,
    **kwargs: Any,
) -> Tensor:
    return loss(logits, labels, num_items_in_batch)


def _sequence(
    loss: TaskLoss,
    labels: Tensor,
    pooled_logits: Tensor,
    config: object = None,
    num_items_in_batch: Tensor | int | None = None,
    **kwargs: Any,
) -> Tensor:
    return loss(pooled_logits, labels, num_items_in_batch)


_SIGNATURES = {
    "causal_lm": _causal,
    "masked_lm": _masked,
    "token_classification": _token,
    "sequence_classification": _sequence,
}


def model_loss_function(loss: TaskLoss) -> partial[Tensor]:
    """``loss`` with the call signature transformers uses for ``model.loss_function``."""
    return partial(_SIGNATURES[loss.task], loss)
