"""The data of one run: load, make the training split long-tailed, inject label noise, scale.

Order of operations, all seeded by the run's seed:

1. ``crossent.data.load_dataset(name, seed, ...)`` gives the train / validation / test splits
   (loaded once per process and reused by later runs with the same data section and seed);
2. with an imbalance factor ``IF > 1``, ``long_tail_indices`` subsamples the *training* split
   to ``n_c = n_max * IF^(-c/(K-1))`` (Cui et al. 2019); validation and test keep their
   balance;
3. with a noise rate ``> 0``, ``inject_label_noise`` corrupts the training labels, and the
   validation labels too when ``validation_labels = "noisy"`` (the default: the validation
   set a user really has); the test split is always clean;

Inputs are used as the loader gives them (it standardises tabular features with training
statistics, except the ``[0, 1]`` pixels of ``digits``; ``[data.options] standardize``).

Example:
    >>> from crossent.study import expand, load_preset
    >>> data = prepare_data(expand(load_preset("quick"))[0])
    >>> data.y_train.shape == data.y_train_clean.shape
    True
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import torch

#: Offset between the seed of the training-label noise and the validation-label noise.
_VALIDATION_SEED_OFFSET = 100_003


@dataclass
class RunData:
    """Tensors of one run. ``y_train`` may be noisy; ``*_clean`` are the true labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_clean: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    kind: str

    @property
    def flipped(self) -> torch.Tensor:
        """``(N_train,)`` bool: training labels the noise changed."""
        return self.y_train != self.y_train_clean


@functools.lru_cache(maxsize=8)
def _load(data_json: str, seed: int) -> Any:
    from crossent.data import load_dataset

    data = json.loads(data_json)
    return load_dataset(
        data["name"],
        seed,
        data_dir=data["data_dir"],
        validation_fraction=data["validation_fraction"],
        test_fraction=data["test_fraction"],
        **data["options"],
    )


def load_split_data(data: dict[str, Any], seed: int) -> Any:
    """The ``crossent.data`` Dataset of a run's ``data`` section and seed (cached)."""
    dataset = _load(json.dumps(data, sort_keys=True), seed)
    if dataset.kind not in ("tabular", "sequence", "image"):
        raise ValueError(
            f"Expected a tabular, sequence or image data set for model linear, mlp or cnn, but "
            f"{data['name']!r} is {dataset.kind!r}; token data trains a tagger (model bilstm, "
            "transformer or hf)"
        )
    return dataset


def noisy_labels(
    labels: torch.Tensor, noise: dict[str, Any], num_classes: int, seed: int
) -> torch.Tensor:
    """``labels`` corrupted as a run config's ``noise`` section says (rate > 0)."""
    from crossent.data import inject_label_noise

    mapping = noise["mapping"]
    if isinstance(mapping, dict):  # JSON keys are strings
        mapping = {int(k): int(v) for k, v in mapping.items()}
    noisy, _ = inject_label_noise(
        labels, noise["rate"], noise["kind"], num_classes, seed, mapping=mapping
    )
    return torch.as_tensor(noisy, dtype=torch.long)


def prepare_data(config: dict[str, Any]) -> RunData:
    """Build the tensors of one resolved run config (see the module doc for the steps)."""
    seed = config["seed"]
    dataset = load_split_data(config["data"], seed)
    k = int(dataset.num_classes)
    x_train, y_train = dataset.train.x.float(), dataset.train.y.long()
    if config["imbalance_factor"] > 1:
        from crossent.data import long_tail_indices

        keep = torch.as_tensor(long_tail_indices(y_train, config["imbalance_factor"], seed))
        x_train, y_train = x_train[keep], y_train[keep]
    x_val, y_val = dataset.validation.x.float(), dataset.validation.y.long()
    x_test, y_test = dataset.test.x.float(), dataset.test.y.long()
    noisy_train, noisy_val = y_train, y_val
    if config["noise"]["rate"] > 0:
        noisy_train = noisy_labels(y_train, config["noise"], k, seed)
        if config["data"]["validation_labels"] == "noisy":
            noisy_val = noisy_labels(y_val, config["noise"], k, seed + _VALIDATION_SEED_OFFSET)
    return RunData(
        x_train=x_train,
        y_train=noisy_train,
        y_train_clean=y_train,
        x_val=x_val,
        y_val=noisy_val,
        y_val_clean=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=k,
        class_names=[str(c) for c in dataset.class_names],
        kind=dataset.kind,
    )
