"""Train and evaluate one tagging run (token classification), and check a tagging study.

:func:`train_tagging_run` is what :func:`crossent.study.train.train_run` runs for a tagger
model (``bilstm``, ``transformer``, ``hf``); it returns the same plain structure as the
per-sample runs, with token-level and entity-level metrics:

* ``metrics`` on the clean test split: ``accuracy`` (token accuracy over non-padding
  tokens), ``entity_precision``, ``entity_recall``, ``entity_f1`` (micro) and
  ``entity_per_type`` (:mod:`crossent.study.ner_metrics`), ``macro_f1`` (token-level macro-F1
  over the tags), ``confusion_matrix`` and ``per_class_recall`` of the tags; ``nll``,
  ``brier``, ``ece``, ``mce``, ``ace`` (15 bins) over the non-padding tokens; on the
  validation split with its noisy labels (``val_*``) and with its clean labels
  (``val_clean_*``): ``ece``, ``mce`` and ``entity_f1``; temperature scaling fitted on the
  validation tokens (``temperature``, ``ece_ts``); ``flipped`` / ``memorised`` /
  ``corrected`` counted over training tokens;
* ``history`` per epoch: ``train_loss`` (mean over tokens), ``train_loss_excess`` for
  smoothed losses, ``test_accuracy``, ``test_ece`` and ``test_entity_f1``;
* ``arrays``: probabilities (float16) and tags of the non-padding test and validation tokens.

Batches are sentences; each batch is cut to its longest sentence before the forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from crossent.study import metrics as m
from crossent.study._reader import StudyConfigError
from crossent.study.ner_metrics import entity_scores, token_accuracy
from crossent.study.preflight import check_each_loss
from crossent.study.taggers import build_tagger
from crossent.study.tagging_data import TagData, load_token_dataset, noisy_tags, prepare_tag_data
from crossent.study.token_losses import TokenLoss, make_token_loss, span_minimum_loss
from crossent.study.train import (
    _calibration,
    _known_good_inputs,
    _optimizer,
    _temperature_scaling,
    minimum_loss,
    with_training_record,
)

#: Sentences per forward pass when predicting.
PREDICT_BATCH = 512


def _trim(x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cut a batch of padded rows to its longest sentence."""
    width = max(int((x != 0).sum(dim=1).max()), 1)
    return (x[:, :width], *(o[:, :width] for o in others))


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(n, T, K)`` float64 logits of every sentence (eval mode, no gradient)."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], PREDICT_BATCH):
            chunk = x[start : start + PREDICT_BATCH]
            (short,) = _trim(chunk)
            logits = model(short).double()
            pad = x.shape[1] - logits.shape[1]
            out.append(torch.nn.functional.pad(logits, (0, 0, 0, pad)))
    return torch.cat(out)


def _flat(logits: torch.Tensor, tags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, K)`` logits and ``(M,)`` tags of the non-padding tokens."""
    keep = tags != -100
    return logits[keep], tags[keep]


def _epoch_metrics(model: nn.Module, data: TagData) -> dict[str, float]:
    from crossent.calibration import expected_calibration_error

    logits = predict(model, data.x_test)
    flat, tags = _flat(logits, data.y_test)
    return {
        "test_accuracy": token_accuracy(logits.argmax(-1), data.y_test),
        "test_ece": float(expected_calibration_error(flat.softmax(1), tags, n_bins=15)),
        "test_entity_f1": entity_scores(logits.argmax(-1), data.y_test, data.tag_names)["f1"],
    }


def _train(
    config: dict[str, Any], data: TagData, model: nn.Module, loss_fn: TokenLoss
) -> dict[str, list[float]]:
    training = config["training"]
    optimizer = _optimizer(model, training)
    generator = torch.Generator().manual_seed(config["seed"])
    n = data.x_train.shape[0]
    batch = training["batch_size"] or n
    tokens = int((data.y_train != -100).sum())
    history: dict[str, list[float]] = {
        "train_loss": [],
        "test_accuracy": [],
        "test_ece": [],
        "test_entity_f1": [],
    }
    for epoch in range(training["epochs"]):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            x, y = _trim(data.x_train[idx], data.y_train[idx])
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                value = float(loss.detach())
                raise FloatingPointError(f"training loss became {value} in epoch {epoch + 1}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * int((y != -100).sum())
        history["train_loss"].append(total / tokens)
        for key, value in _epoch_metrics(model, data).items():
            history[key].append(value)
    return history


def _split_metrics(logits: torch.Tensor, tags: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """ECE, MCE and entity F1 of one split against the given tags."""
    from crossent import calibration as cal

    flat, labels = _flat(logits, tags)
    probs = flat.softmax(1)
    return {
        "ece": float(cal.expected_calibration_error(probs, labels, n_bins=15)),
        "mce": float(cal.maximum_calibration_error(probs, labels, n_bins=15)),
        "entity_f1": entity_scores(logits.argmax(-1), tags, names)["f1"],
    }


def _evaluate(config: dict[str, Any], data: TagData, model: nn.Module) -> dict[str, Any]:
    k, names = data.num_classes, data.tag_names
    test_logits = predict(model, data.x_test)
    val_logits = predict(model, data.x_val)
    pred = test_logits.argmax(-1)
    flat, labels = _flat(test_logits, data.y_test)
    flat_pred = flat.argmax(1)
    scores = entity_scores(pred, data.y_test, names)
    metrics: dict[str, Any] = {
        "accuracy": token_accuracy(pred, data.y_test),
        "entity_precision": scores["precision"],
        "entity_recall": scores["recall"],
        "entity_f1": scores["f1"],
        "entity_support": scores["support"],
        "entity_per_type": scores["per_type"],
        "macro_f1": m.macro_f1(flat_pred, labels, k),
        "per_class_recall": m.per_class_recall(flat_pred, labels, k),
        "confusion_matrix": m.confusion_matrix(flat_pred, labels, k).tolist(),
        **_calibration(flat, labels),
        "validation_labels": config["data"]["validation_labels"],
        "validation_accuracy": token_accuracy(val_logits.argmax(-1), data.y_val),
    }
    for prefix, tags in (("val", data.y_val), ("val_clean", data.y_val_clean)):
        for key, value in _split_metrics(val_logits, tags, names).items():
            metrics[f"{prefix}_{key}"] = value
    val_flat, val_labels = _flat(val_logits, data.y_val)
    metrics.update(_temperature_scaling(val_flat, val_labels, flat, labels))
    flipped = data.flipped
    train_pred = predict(model, data.x_train).argmax(-1)
    metrics["train_size"] = int((data.y_train != -100).sum())
    metrics["flipped"] = int(flipped.sum())
    metrics["memorised"] = int((train_pred[flipped] == data.y_train[flipped]).sum())
    metrics["corrected"] = int((train_pred[flipped] == data.y_train_clean[flipped]).sum())
    val_clean = data.y_val_clean[data.y_val_clean != -100]
    arrays = {
        "test_probs": flat.softmax(1).numpy().astype(np.float16),
        "test_labels": labels.numpy().astype(np.int64),
        "val_probs": val_flat.softmax(1).numpy().astype(np.float16),
        "val_labels": val_labels.numpy().astype(np.int64),
        "val_clean_labels": val_clean.numpy().astype(np.int64),
    }
    return {"metrics": metrics, "arrays": arrays}


def train_tagging_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one resolved tagging run config (see the module doc).

    Raises:
        FloatingPointError: when the training loss becomes NaN or infinite.
        ValueError: bad data (tags outside the tag set, empty sentences, sentences longer
            than the model's limit) or options a tagging run does not take.
    """
    torch.manual_seed(config["seed"])
    data = prepare_tag_data(config)
    model = build_tagger(config["model"], data.vocabulary, data.tag_names)
    loss_fn = make_token_loss(config["loss"], data.num_classes)
    with _known_good_inputs():
        history = _train(config, data, model, loss_fn)
    if loss_fn.span is None:
        minimum = minimum_loss(config["loss"], loss_fn.loss_fn, data.num_classes)
    else:
        minimum = span_minimum_loss(loss_fn, data.y_train)
    return with_training_record(_evaluate(config, data, model), history, minimum, data.tag_names)


# ---------------------------------------------------------------- preflight


def _check_model(config: dict[str, Any], dataset: Any) -> None:
    """Build the model and run it on the longest sentence of each split.

    So a sentence longer than the model's limit is refused before any run (a Hugging Face
    model with a tokenizer checks every sentence's length in sub-tokens).
    """
    try:
        model = build_tagger(config["model"], dataset.vocabulary, dataset.class_names)
        model.eval()
        for split in (dataset.train, dataset.validation, dataset.test):
            row = int((split.x != 0).sum(dim=1).argmax())
            with torch.no_grad():
                model(split.x[row : row + 1])
            if hasattr(model, "check_lengths"):
                model.check_lengths(split.x)
    except (ValueError, TypeError, ImportError, OSError) as err:
        raise StudyConfigError("model", str(err)) from None


def _check_losses(config: Any, runs: list[dict[str, Any]], dataset: Any) -> None:
    """Build every loss once and call it on two training sentences with random logits."""
    tags = dataset.train.y[:2]
    logits = torch.randn(*tags.shape, dataset.num_classes)
    check_each_loss(
        config, runs, lambda loss: make_token_loss(loss, dataset.num_classes)(logits, tags)
    )


def preflight_tagging(config: Any, runs: list[dict[str, Any]]) -> None:
    """Load the data, draw each noise kind, build the model and every loss once.

    Raises:
        StudyConfigError: naming ``data``, ``imbalance.factors``, ``noise``, ``model`` or
            ``losses[i]`` and the reason, before anything is written to the store.
    """
    if any(factor != 1 for factor in config.imbalance_factors):
        raise StudyConfigError(
            "imbalance.factors", "expected [1] for a tagging study (long tails are per sample)"
        )
    try:
        dataset = load_token_dataset(runs[0]["data"], runs[0]["seed"])
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise StudyConfigError("data", str(err)) from None
    names = [str(c) for c in dataset.class_names]
    drawn = set()
    for run in runs:
        if run["noise"]["rate"] > 0 and run["noise"]["kind"] not in drawn:
            drawn.add(run["noise"]["kind"])
            try:
                noisy_tags(dataset.train.y, run["noise"], names, run["seed"])
            except (ValueError, TypeError) as err:
                raise StudyConfigError("noise", str(err)) from None
    _check_model(runs[0], dataset)
    _check_losses(config, runs, dataset)
