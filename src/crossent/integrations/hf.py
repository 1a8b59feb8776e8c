r"""Hugging Face: crossent losses in the Trainer and in the model; causal LMs without logits.

* :func:`loss_func` — ``Trainer(compute_loss_func=loss_func("focal(gamma=2)", task=...))``.
* :func:`set_model_loss` — the model computes the loss itself (``model.loss_function``).
* :func:`patch_causal_lm` — a ``*ForCausalLM`` computes its training loss from the hidden
  states with :func:`crossent.linear_loss`; :func:`causal_lm_trainer_kwargs` keeps that with a
  ``compute_loss_func``.

Every loss is normalised as the Trainer expects (``transformers/loss/loss_utils.py``):
``sum over items / num_items_in_batch``, where the Trainer counts the non-ignored targets of
all micro-batches of a gradient-accumulation step (shifted for causal LMs) and, once a
``compute_loss_func`` is set or the model takes ``num_items_in_batch``, no longer divides by
the accumulation steps; without ``num_items_in_batch`` the mean over this batch's items.

Needs ``transformers`` and ``accelerate`` (``pip install 'crossent[hf]'``); importing
:mod:`crossent` does not import them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

try:
    import transformers
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "crossent.integrations.hf needs transformers: pip install 'crossent[hf]'"
    ) from error

from crossent.integrations import _hf_inspect
from crossent.integrations._hf_patch import FusedSettings, PatchState, make_forward
from crossent.integrations._hf_tasks import (
    LOSS_TYPES,
    TASKS,
    TaskLoss,
    model_loss_function,
    shift_labels,
)

__all__ = [
    "TASKS",
    "ShiftLabelsCollator",
    "TrainerLoss",
    "causal_lm_trainer_kwargs",
    "loss_func",
    "patch_causal_lm",
    "set_model_loss",
    "shift_labels",
]


class TrainerLoss:
    """The callable :func:`loss_func` returns: ``fn(outputs, labels, num_items_in_batch)``.

    Args:
        loss: the task loss on logits.
        prefer_model_loss: return ``outputs.loss`` when the model computed one (the models
            patched through :func:`causal_lm_trainer_kwargs` compute it without logits).
    """

    def __init__(self, loss: TaskLoss, *, prefer_model_loss: bool = False) -> None:
        self.loss = loss
        self.prefer_model_loss = prefer_model_loss

    def __call__(
        self,
        outputs: Any,
        labels: Tensor | None,
        num_items_in_batch: Tensor | int | None = None,
        shift_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of one micro-batch: ``sum / num_items_in_batch`` (module docstring)."""
        if self.prefer_model_loss:
            own = outputs.get("loss") if isinstance(outputs, Mapping) else None
            if own is not None:
                return own
        logits = outputs.get("logits") if isinstance(outputs, Mapping) else outputs[0]
        if logits is None:
            raise ValueError(
                "Expected model outputs with logits, but they have none (a model patched by "
                "patch_causal_lm returns no logits when trained with labels: give the Trainer "
                "causal_lm_trainer_kwargs(model, ...) instead of loss_func)"
            )
        return self.loss(logits, labels, num_items_in_batch, shift_labels)


def loss_func(spec: str | torch.nn.Module, task: str, **options: Any) -> TrainerLoss:
    r"""A crossent loss for ``Trainer(compute_loss_func=...)``.

    The Trainer pops ``labels`` from the batch (so the model computes no loss), runs the model,
    then calls ``fn(outputs, labels, num_items_in_batch=n)``. The callable returns

    .. math::

        L = \frac{1}{n} \sum_{i:\, y_i \ne \text{ignore}} \ell(z_i, y_i)

    (``n`` the items of the whole accumulated step; without it, this batch's items), which is
    what the Trainer expects once a ``compute_loss_func`` is set: it no longer divides by the
    gradient accumulation steps. ``num_items_in_batch=None`` (a direct call) gives the mean
    over this batch's non-ignored items. Called directly, ``shift_labels=`` (causal LM) takes
    already-shifted targets, as transformers' own loss does.

    Tasks (``logits`` are ``outputs.logits``):

    * ``"sequence_classification"``: ``(B, C)`` logits; integer labels ``(B,)`` for the
      multiclass losses; float multi-label targets ``(B, C)`` for the binary losses
      (``"bce"``, ``"sigmoid_focal"``, ``"binary_gce"``, ...); overlap losses (``"dice"``,
      ...) as they are, weighted by the batch's share of the step's items.
    * ``"token_classification"``, ``"masked_lm"``: ``(B, T, C)`` logits, ``(B, T)`` labels
      with ``-100`` (the loss's ``ignore_index``) for the positions that do not count.
    * ``"causal_lm"``: as masked LM after the shift transformers does (position ``t``
      predicts label ``t + 1``; the last position predicts nothing).

    Args:
        spec: a registry spec string (``"sgce(q=0.7, label_smoothing=0.1)"``, see
            :func:`crossent.get_loss`) or a :mod:`crossent.nn` loss module, with its default
            reduction (the reduction is the Trainer's).
        task: one of :data:`TASKS`.
        **options: the loss's keyword arguments (with a spec string).

    Returns:
        The callable, a :class:`TrainerLoss`.

    Raises:
        ValueError: for an unknown task; for a loss whose input is not the model's logits
            (``"nll"``, ``"distill"``); for an overlap loss with a token or language-model
            task (it does not decompose over tokens); for a binary loss with class-index
            tasks; when a reduction is given.
        TypeError: when ``spec`` is neither a string nor a crossent loss module.

    Example:
        >>> import torch
        >>> fn = loss_func("focal(gamma=2)", task="token_classification")
        >>> logits = torch.randn(2, 5, 3)
        >>> labels = torch.tensor([[0, 1, 2, -100, -100], [2, 2, 1, 0, -100]])
        >>> total = fn({"logits": logits}, labels, num_items_in_batch=7) * 7
        >>> per_token = torch.cat([logits[0, :3], logits[1, :4]])
        >>> targets = torch.tensor([0, 1, 2, 2, 2, 1, 0])
        >>> from crossent import focal_loss
        >>> torch.allclose(total, focal_loss(per_token, targets, gamma=2, reduction="sum"))
        True
    """
    return TrainerLoss(TaskLoss(spec, task, options))


def set_model_loss(model: torch.nn.Module, spec: str | torch.nn.Module, **options: Any) -> None:
    """Make ``model`` compute a crossent loss itself, through ``model.loss_function``.

    The model's task comes from its ``loss_type`` (``ForCausalLM``, ``ForMaskedLM``,
    ``ForTokenClassification``, ``ForSequenceClassification``); the loss is normalised as by
    :func:`loss_func` when the forward passes ``num_items_in_batch`` to the loss (causal and
    masked LMs). transformers' generic token and sequence classification heads (Llama, Qwen,
    Mistral, ...) call the loss without it, so it returns the batch mean; for those
    ``model.accepts_loss_kwargs`` is set to False, so that the Trainer divides the loss by the
    gradient accumulation steps (otherwise, as in transformers 5.25 with the model's own loss,
    the Trainer takes the batch mean as already normalised and a step's gradient is ``k``
    times too large at accumulation ``k``).

    Args:
        model: a transformers ``PreTrainedModel`` whose forward reads ``self.loss_function``.
        spec: registry spec string or :mod:`crossent.nn` loss module (as :func:`loss_func`).
        **options: the loss's keyword arguments.

    Raises:
        ValueError: for a model class whose forward ignores ``self.loss_function`` (the BERT
            family builds ``torch.nn.CrossEntropyLoss()`` inside its forward: the setter
            would be silently ignored), for a loss type other than the four above, and as
            :func:`loss_func`.

    Example:
        >>> from transformers import LlamaConfig, LlamaForTokenClassification
        >>> config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, num_labels=3)
        >>> model = LlamaForTokenClassification(config)
        >>> set_model_loss(model, "gce(q=0.7)")
        >>> ids = torch.randint(0, 32, (2, 6))
        >>> out = model(input_ids=ids, labels=torch.randint(0, 3, (2, 6)))
        >>> out.loss.shape
        torch.Size([])
    """
    loss_type = getattr(model, "loss_type", None)
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"Expected a model whose loss_type is one of {', '.join(LOSS_TYPES)}, but "
            f"{type(model).__name__} has loss_type={loss_type!r}"
        )
    _hf_inspect.check_reads_loss_function(model)
    model.loss_function = model_loss_function(TaskLoss(spec, LOSS_TYPES[loss_type], options))
    if not _hf_inspect.loss_call_takes_items(model):
        model.accepts_loss_kwargs = False


def patch_causal_lm(
    model: torch.nn.Module,
    spec: str = "ce",
    *,
    logits_in_eval: bool = True,
    chunk_size: int | None = None,
    accumulate_dtype: torch.dtype | None = None,
    **options: Any,
) -> torch.nn.Module:
    r"""Train a causal LM on ``spec`` without forming its ``(tokens, vocab)`` logits.

    For a forward call in training mode with ``labels`` (or ``shift_labels``), the model's own
    forward runs, but its output layer computes
    ``crossent.linear_loss(hidden, W, shifted labels, spec, linear_bias=b, reduction="sum")
    / n`` chunk by chunk (``n``: ``num_items_in_batch`` if passed, else the non-ignored
    targets) and the returned output has ``loss`` and no ``logits``. The gradients of the
    hidden states, ``W`` and ``b`` equal those of the unpatched model with ``spec`` as its
    loss, to float rounding.

    Otherwise — no labels (generation, inference), or eval mode with ``logits_in_eval`` — the
    model's own forward runs with its logits, and its loss (if labels are given) is ``spec``
    on them, normalised the same way. Handled: ``labels`` (shifted as transformers does),
    ``shift_labels`` (already shifted, e.g. from a collator; used instead of ``labels``),
    ``num_items_in_batch``, ``logits_to_keep`` (the loss is over the kept positions),
    ``return_dict=False``, auxiliary losses the forward adds (MoE router losses), autocast.

    With the Trainer: the default ``Trainer`` passes ``labels`` and ``num_items_in_batch`` to
    the forward, so a patched model needs nothing else. With a ``compute_loss_func`` the Trainer
    removes ``labels`` before the forward: use :func:`causal_lm_trainer_kwargs`.

    Args:
        model: a transformers causal LM whose forward computes
            ``logits = self.<output embeddings>(hidden)`` and its loss through
            ``self.loss_function``, with ``get_output_embeddings()`` a ``torch.nn.Linear``.
        spec: a multiclass registry spec string (``"ce"``, ``"focal(gamma=2)"``, ...).
            Default ``"ce"``.
        logits_in_eval: in eval mode, run the model's own forward (logits returned). False:
            eval calls with labels are fused too (loss only). Default True.
        chunk_size: rows per chunk of :func:`crossent.linear_loss` (None: chosen from the
            vocabulary, hidden size and free memory).
        accumulate_dtype: dtype of the weight-gradient accumulator (None: float32).
        **options: the loss's keyword arguments (``label_smoothing``, ``z_loss``, ...).

    Returns:
        ``model``, patched in place (patching again replaces the loss).

    Raises:
        ValueError: for a model whose forward changes the logits after the output layer
            (final logit soft-capping, a logit scale), computes its loss without
            ``self.loss_function``, or has no ``torch.nn.Linear`` output embeddings; for a
            loss that is not multiclass (overlap losses do not decompose over tokens); for
            a ``reduction`` option.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
        >>> model = patch_causal_lm(LlamaForCausalLM(config), "focal(gamma=2)")
        >>> ids = torch.randint(0, 64, (2, 8))
        >>> out = model(input_ids=ids, labels=ids)
        >>> out.logits is None, out.loss.requires_grad
        (True, True)
    """
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(
            f"Expected the output embeddings of {type(model).__name__} to be a torch.nn.Linear, "
            f"but got {type(head).__name__}"
        )
    _hf_inspect.check_reads_loss_function(model)
    _hf_inspect.check_plain_logits(model, _hf_inspect.head_attribute(model, head))
    if not isinstance(spec, str):
        raise TypeError(f"Expected `spec` to be a registry spec string, but got {type(spec)}")
    loss = TaskLoss(spec, "causal_lm", options)  # checks the spec, its kind and the options
    settings = FusedSettings(
        spec, options, chunk_size, accumulate_dtype, loss.ignore_index, logits_in_eval
    )
    state = PatchState(type(model).forward, settings, loss)
    model._crossent_fused_loss = state
    model.forward = make_forward(type(model).forward).__get__(model)
    model.loss_function = state.loss_function
    return model


class ShiftLabelsCollator:
    """A data collator that adds ``shift_labels`` (``labels`` shifted, :func:`shift_labels`).

    The Trainer removes ``labels`` from the batch before the forward when a
    ``compute_loss_func`` is set, but passes ``shift_labels`` on, so a model patched by
    :func:`patch_causal_lm` still gets its targets; the Trainer counts
    ``num_items_in_batch`` from ``shift_labels`` when present, as from ``labels[..., 1:]``.

    Args:
        collator: the collator to wrap (``transformers.default_data_collator`` if None).
        ignore_index: the value the shift pads with. Default -100.
    """

    def __init__(self, collator: Callable | None = None, ignore_index: int = -100) -> None:
        self.collator = collator or transformers.default_data_collator
        self.ignore_index = ignore_index

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        """The wrapped collator's batch, with ``shift_labels`` when it has ``labels``."""
        batch = self.collator(features)
        if batch.get("labels") is not None and batch.get("shift_labels") is None:
            batch["shift_labels"] = shift_labels(batch["labels"], self.ignore_index)
        return batch


def causal_lm_trainer_kwargs(
    model: torch.nn.Module,
    spec: str = "ce",
    *,
    data_collator: Callable | None = None,
    **patch_options: Any,
) -> dict[str, Any]:
    """Patch ``model`` and give the Trainer a ``compute_loss_func`` that keeps it logit-free.

    ``Trainer(model=model, ..., **causal_lm_trainer_kwargs(model, "focal(gamma=2)"))``: the
    model is patched (:func:`patch_causal_lm`), the collator adds ``shift_labels``
    (:class:`ShiftLabelsCollator`) so the forward still sees its targets after the Trainer
    removed ``labels``, and the ``compute_loss_func`` returns the loss the model computed
    (without logits in training; from the logits in evaluation). Without a
    ``compute_loss_func`` none of this is needed: patch the model and use the plain Trainer.

    Args:
        model: as :func:`patch_causal_lm`.
        spec: a multiclass registry spec string. Default ``"ce"``.
        data_collator: the collator to wrap (None: transformers' default collator).
        **patch_options: :func:`patch_causal_lm`'s keyword arguments and the loss's options.

    Returns:
        ``{"compute_loss_func": ..., "data_collator": ...}`` for ``Trainer(**...)``.
    """
    patch_causal_lm(model, spec, **patch_options)
    state: PatchState = model._crossent_fused_loss
    return {
        "compute_loss_func": TrainerLoss(state.task_loss, prefer_model_loss=True),
        "data_collator": ShiftLabelsCollator(data_collator, state.settings.ignore_index),
    }
