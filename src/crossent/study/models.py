"""The study's models: ``linear``, ``mlp`` and ``cnn`` (1-D for sequences, 2-D for images).

Inputs are ``(N, d)`` for tabular data, ``(N, C, L)`` for sequences (``mnist1d``) and
``(N, C, H, W)`` for images; every model returns ``(N, K)`` logits. Weights are drawn from
PyTorch's global generator, so seed it first (:func:`crossent.study.train.train_run` does).

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = build_model({"name": "cnn", "channels": [8], "kernel_size": 3, "hidden": [16],
    ...                      "dropout": 0.0}, (1, 40), num_classes=10)
    >>> model(torch.zeros(2, 1, 40)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossent.core.checks import check_choice, fail


def _dense(
    in_features: int, hidden: list[int], dropout: float, num_classes: int
) -> list[nn.Module]:
    """``[Linear, ReLU, Dropout] * len(hidden)`` followed by the output layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return layers


def _conv_stack(input_shape: tuple[int, ...], channels: list[int], kernel_size: int) -> nn.Module:
    """Conv-ReLU(-MaxPool 2) blocks, 1-D for ``(C, L)`` inputs and 2-D for ``(C, H, W)``."""
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if len(input_shape) == 2 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[nn.Module] = []
    in_channels, size = input_shape[0], min(input_shape[1:])
    for width in channels:
        layers += [conv(in_channels, width, kernel_size, padding=kernel_size // 2), nn.ReLU()]
        if size >= 4:  # keep at least a 2-wide map after pooling
            layers.append(pool(2))
            size //= 2
        in_channels = width
    return nn.Sequential(*layers)


def build_model(
    config: dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """Build the model a run config's ``model`` section describes.

    Args:
        config: the ``model`` section: ``name`` (``linear`` | ``mlp`` | ``cnn``) and, for
            ``mlp``/``cnn``, ``hidden`` (widths of the dense layers) and ``dropout``; for
            ``cnn``, ``channels`` (one conv block per entry) and ``kernel_size``.
        input_shape: the shape of one example, without the batch dimension.
        num_classes: ``K``, the number of logits.

    Returns:
        A module mapping ``(N, *input_shape)`` inputs to ``(N, K)`` logits.

    Raises:
        ValueError: for an unknown model, or ``cnn`` on tabular data.
    """
    name = config["name"]
    check_choice("model.name", name, ("linear", "mlp", "cnn"))
    in_features = 1
    for size in input_shape:
        in_features *= size
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), *_dense(in_features, config["hidden"], config["dropout"], num_classes)
        )
    if len(input_shape) not in (2, 3):
        raise fail(
            "model.name",
            "to be 'linear' or 'mlp' for tabular data ('cnn' needs (C, L) or (C, H, W) inputs)",
            name,
        )
    features = _conv_stack(input_shape, config["channels"], config["kernel_size"])
    with torch.no_grad():
        flat = features(torch.zeros(1, *input_shape)).numel()
    head = _dense(flat, config["hidden"], config["dropout"], num_classes)
    return nn.Sequential(features, nn.Flatten(), *head)
