"""Train and evaluate one run: seeded, deterministic on CPU, plain results.

:func:`train_run` takes one resolved run config (see :func:`crossent.study.config.expand`)
and returns plain Python data, so a worker process can hand it back to the driver:

* ``metrics`` on the clean test split: ``accuracy``, ``macro_f1``, ``per_class_recall``,
  ``confusion_matrix``, ``nll``, ``brier``, ``ece``, ``mce``, ``ace`` (15 bins), ``ece_ts``
  (ECE after temperature scaling fitted on the validation split with the config's
  ``validation_labels``, ``"noisy"`` or ``"clean"``) and ``temperature``; for noisy runs
  ``flipped`` (training labels the noise changed), ``memorised`` (of those, predicted as
  their noisy label after training) and ``corrected`` (predicted as their true label);
  ``converged`` (see :func:`is_converged`); ``precision_recall`` for binary data sets.
* ``history`` per epoch: ``train_loss`` (mean over the epoch's batches), for smoothed losses
  ``train_loss_excess`` (the loss minus its minimum achievable value, so curves of smoothed
  and unsmoothed losses are comparable), ``test_accuracy`` and ``test_ece``.
* ``arrays``: test and validation probabilities (float16) with their labels, for the
  report's reliability diagrams.

Example:
    >>> from crossent.study import expand, load_preset
    >>> result = train_run(expand(load_preset("quick"))[0])  # doctest: +SKIP
    >>> 0 <= result["metrics"]["accuracy"] <= 1                # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from crossent.core import config as switches
from crossent.study import metrics as m
from crossent.study.models import build_model
from crossent.study.prepare import RunData, prepare_data

#: A run is "not converged" if its training loss fell by more than this fraction of the
#: first epoch's loss over the last tenth of the epochs.
CONVERGENCE_TOLERANCE = 0.01


def make_loss(loss: dict[str, Any], train_labels: torch.Tensor, num_classes: int) -> nn.Module:
    """The loss module of a run: ``get_loss(name, **params)``, plus class weights.

    Class weights (``class_weights = {method, beta}``) come from the training-label counts
    via :func:`crossent.weights.class_weights` and are passed as ``weight=``, PyTorch's
    weighted mean, so weighted and unweighted arms train at comparable step sizes.
    """
    from crossent.registry import get_loss
    from crossent.weights import class_weights

    params = dict(loss["params"])
    if params.get("smoothing") == "span":
        raise ValueError(
            "Expected smoothing 'uniform' or 'others' for per-sample labels: smoothing='span' "
            "needs a sequence of tags (token data and a tagger model such as bilstm)"
        )
    if loss["class_weights"] is not None:
        counts = torch.bincount(train_labels, minlength=num_classes)
        params["weight"] = class_weights(counts, **loss["class_weights"]).float()
    return get_loss(loss["name"], **params)


def minimum_loss(loss: dict[str, Any], loss_fn: nn.Module, num_classes: int) -> float | None:
    """The minimum achievable loss of a smoothed loss for one example, or ``None``.

    A loss with ``label_smoothing > 0`` cannot reach 0; the smoothing is read from the
    built module, so a default one (``sgce`` smooths by 0.1 unless told otherwise) counts
    too. For ``ce`` this is :func:`crossent.min_achievable_loss` (the entropy of the
    smoothed target); for any other smoothed loss it is found numerically, by minimising the
    loss of one row of logits with L-BFGS. Weighted losses and unsmoothed ones return
    ``None`` (their minimum is 0 or depends on the class).
    """
    eps = getattr(loss_fn, "label_smoothing", 0.0)
    if not eps or loss["class_weights"] is not None:
        return None
    if loss["name"] in ("ce", "cross_entropy"):
        from crossent import min_achievable_loss

        smoothing = getattr(loss_fn, "smoothing", "uniform")
        return float(min_achievable_loss(num_classes, eps, smoothing=smoothing))
    from crossent.functional.cross_entropy import minimum_over_logits

    target = torch.zeros(1, dtype=torch.long)
    return minimum_over_logits(loss_fn, target, (1, num_classes))


def is_converged(train_loss: list[float], minimum: float | None = None) -> bool:
    """Whether the training loss stopped falling.

    With ``k = max(1, round(E / 10))`` for ``E`` epochs and ``L`` the loss minus ``minimum``
    (0 by default), a run is converged unless ``L[E-1-k] - L[E-1] > 0.01 * L[0]``: the loss
    still fell by more than 1% of its first-epoch value over the last tenth of the epochs.
    Measuring the drop against the first epoch (not the latest value) keeps a loss that tends
    to 0, such as CE on separable data, from being flagged forever.

    Example:
        >>> is_converged([2.0, 1.0, 0.5, 0.5])
        True
        >>> is_converged([2.0, 1.0, 0.5, 0.3])
        False
    """
    if len(train_loss) < 2:
        return False
    base = minimum or 0.0
    k = max(1, round(len(train_loss) / 10))
    first = train_loss[0] - base
    drop = train_loss[-1 - k] - train_loss[-1]
    return drop <= CONVERGENCE_TOLERANCE * abs(first)


@contextlib.contextmanager
def _known_good_inputs() -> Iterator[None]:
    """Skip the library's tensor-content checks in the training loop, then restore them.

    The labels come from the data module and the logits from the model, so the checks
    (label range, double-softmax warning) only cost time there; the loop checks that each
    loss is finite itself.
    """
    before = (switches.validate_args(), switches.warn_probabilities())
    switches.set_validation(False)
    switches.set_probability_warning(False)
    try:
        yield
    finally:
        switches.set_validation(before[0])
        switches.set_probability_warning(before[1])


def _optimizer(model: nn.Module, training: dict[str, Any]) -> torch.optim.Optimizer:
    if training["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=training["lr"],
            momentum=training["momentum"],
            weight_decay=training["weight_decay"],
        )
    return torch.optim.Adam(
        model.parameters(), lr=training["lr"], weight_decay=training["weight_decay"]
    )


def _epoch_order(
    labels: torch.Tensor, sampler: str, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Indices of one epoch: a permutation, or class-balanced draws with replacement."""
    n = labels.shape[0]
    if sampler == "class_balanced":
        counts = torch.bincount(labels, minlength=num_classes).double()
        weights = 1.0 / counts[labels]
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x).double()


def _train(
    config: dict[str, Any], data: RunData, model: nn.Module, loss_fn: nn.Module
) -> dict[str, list[float]]:
    """The training loop; returns the per-epoch history."""
    from crossent.calibration import expected_calibration_error

    training = config["training"]
    optimizer = _optimizer(model, training)
    generator = torch.Generator().manual_seed(config["seed"])
    n = data.y_train.shape[0]
    batch = training["batch_size"] or n
    history: dict[str, list[float]] = {"train_loss": [], "test_accuracy": [], "test_ece": []}
    for epoch in range(training["epochs"]):
        model.train()
        order = _epoch_order(data.y_train, config["loss"]["sampler"], data.num_classes, generator)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                value = float(loss.detach())
                raise FloatingPointError(f"training loss became {value} in epoch {epoch + 1}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.shape[0]
        history["train_loss"].append(total / n)
        logits = _predict(model, data.x_test)
        history["test_accuracy"].append(m.accuracy(logits.argmax(1), data.y_test))
        ece = expected_calibration_error(logits.softmax(1), data.y_test, n_bins=15)
        history["test_ece"].append(float(ece))
    return history


def _calibration(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from crossent import calibration as cal

    probs = logits.softmax(1)
    return {
        "nll": float(cal.negative_log_likelihood(probs, labels)),
        "brier": float(cal.brier_score(probs, labels)),
        "ece": float(cal.expected_calibration_error(probs, labels, n_bins=15)),
        "mce": float(cal.maximum_calibration_error(probs, labels, n_bins=15)),
        "ace": float(cal.adaptive_calibration_error(probs, labels, n_bins=15)),
    }


def _temperature_scaling(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
) -> dict[str, Any]:
    """Fit a temperature on validation; ``temperature`` and ``ece_ts`` on test.

    When the fit has no answer — at heavy noise the noisy validation labels can carry so
    little signal that the NLL keeps falling towards T = infinity (uniform predictions) —
    both are ``None`` and ``ts_error`` says why; the run itself is still a result.
    """
    from crossent.calibration import TemperatureScaling, expected_calibration_error

    scaler = TemperatureScaling()
    try:
        scaler.fit(val_logits.float(), val_labels)
    except (RuntimeError, ValueError) as err:
        return {"temperature": None, "ece_ts": None, "ts_error": str(err)}
    probs = scaler(test_logits.float()).double().softmax(1)
    ece = expected_calibration_error(probs, test_labels, n_bins=15)
    return {"temperature": float(scaler.temperature), "ece_ts": float(ece), "ts_error": None}


def _evaluate(config: dict[str, Any], data: RunData, model: nn.Module) -> dict[str, Any]:
    """Test metrics, temperature scaling on validation, memorised/corrected counts."""
    k = data.num_classes
    test_logits = _predict(model, data.x_test)
    val_logits = _predict(model, data.x_val)
    pred = test_logits.argmax(1)
    metrics: dict[str, Any] = {
        "accuracy": m.accuracy(pred, data.y_test),
        "macro_f1": m.macro_f1(pred, data.y_test, k),
        "per_class_recall": m.per_class_recall(pred, data.y_test, k),
        "confusion_matrix": m.confusion_matrix(pred, data.y_test, k).tolist(),
        **_calibration(test_logits, data.y_test),
        "validation_labels": config["data"]["validation_labels"],
        "validation_accuracy": m.accuracy(val_logits.argmax(1), data.y_val),
    }
    metrics.update(_temperature_scaling(val_logits, data.y_val, test_logits, data.y_test))
    flipped = data.flipped
    train_pred = _predict(model, data.x_train).argmax(1)
    metrics["train_size"] = int(data.y_train.shape[0])
    metrics["flipped"] = int(flipped.sum())
    metrics["memorised"] = int((train_pred[flipped] == data.y_train[flipped]).sum())
    metrics["corrected"] = int((train_pred[flipped] == data.y_train_clean[flipped]).sum())
    if k == 2:
        metrics["precision_recall"] = m.precision_recall(test_logits.softmax(1)[:, 1], data.y_test)
    arrays = {
        "test_probs": test_logits.softmax(1).numpy().astype(np.float16),
        "test_labels": data.y_test.numpy().astype(np.int64),
        "val_probs": val_logits.softmax(1).numpy().astype(np.float16),
        "val_labels": data.y_val.numpy().astype(np.int64),
        "val_clean_labels": data.y_val_clean.numpy().astype(np.int64),
    }
    return {"metrics": metrics, "arrays": arrays}


def with_training_record(
    result: dict[str, Any],
    history: dict[str, list[float]],
    minimum: float | None,
    class_names: list[str],
) -> dict[str, Any]:
    """A run's evaluated ``result`` completed with how it trained.

    Adds the loss's minimum (``min_train_loss``) and convergence to the metrics, the excess
    of each epoch's training loss over that minimum to ``history`` (where it is known), the
    history itself and the class names.
    """
    if minimum is not None:
        history["train_loss_excess"] = [v - minimum for v in history["train_loss"]]
    result["metrics"]["min_train_loss"] = minimum
    result["metrics"]["converged"] = is_converged(history["train_loss"], minimum)
    result["history"] = history
    result["class_names"] = class_names
    return result


def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one resolved run config.

    A tagger model (``bilstm``, ``transformer``, ``hf``) trains a tagging run instead
    (:func:`crossent.study.tagging.train_tagging_run`: token and entity metrics).

    Args:
        config: one element of :func:`crossent.study.config.expand`.

    Returns:
        ``{"metrics": dict, "history": dict of per-epoch lists, "arrays": dict of numpy
        arrays, "class_names": list}`` (see the module doc).

    Raises:
        FloatingPointError: when the training loss becomes NaN or infinite.
    """
    from crossent.study.taggers import TAGGERS

    if config["model"]["name"] in TAGGERS:
        from crossent.study.tagging import train_tagging_run

        return train_tagging_run(config)
    torch.manual_seed(config["seed"])
    data = prepare_data(config)
    model = build_model(config["model"], tuple(data.x_train.shape[1:]), data.num_classes)
    loss_fn = make_loss(config["loss"], data.y_train, data.num_classes)
    with _known_good_inputs():
        history = _train(config, data, model, loss_fn)
    minimum = minimum_loss(config["loss"], loss_fn, data.num_classes)
    return with_training_record(_evaluate(config, data, model), history, minimum, data.class_names)
