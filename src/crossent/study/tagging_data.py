"""The data of one tagging run: load a token data set, check its tags, inject tag noise.

Order of operations, seeded by the run's seed:

1. ``crossent.data.load_dataset(name, seed, ...)`` gives ``(n, T)`` token ids and tag ids
   (-100 at padding) for train / validation / test (cached per process, as the per-sample
   studies); every split is checked: tag ids within the tag set, no empty sentence;
2. with a noise rate ``> 0``, :func:`crossent.data.tag_noise.inject_tag_noise` corrupts
   the training tags (per-token ``symmetric`` flips or a ``span-*`` kind), and the validation
   tags too when ``validation_labels = "noisy"``; the test split is always clean.

Imbalance factors, class weights and samplers are per-sample tools and are refused.

Example:
    >>> from crossent.study import parse_config, expand
    >>> raw = {"data": {"name": "synthetic-ner", "options": {"sentences": 200}},
    ...        "model": {"name": "bilstm"}, "noise": {"rates": [0.2]},
    ...        "losses": [{"loss": "ce"}]}
    >>> data = prepare_tag_data(expand(parse_config(raw))[0])
    >>> int(data.flipped.sum()) == round(0.2 * int((data.y_train != -100).sum()))
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from crossent.data.tags import check_sentences, check_tag_ids

#: Offset between the seed of the training-tag noise and the validation-tag noise.
_VALIDATION_SEED_OFFSET = 100_003


@dataclass
class TagData:
    """Tensors of one tagging run. ``y_train`` may be noisy; ``*_clean`` are the true tags."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_clean: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_clean: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    tag_names: list[str]
    vocabulary: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """``K``, the number of tags."""
        return len(self.tag_names)

    @property
    def flipped(self) -> torch.Tensor:
        """``(n, T)`` bool: training tokens whose tag the noise changed."""
        return self.y_train != self.y_train_clean


def load_token_dataset(data: dict[str, Any], seed: int) -> Any:
    """The checked token Dataset of a run's ``data`` section and seed (cached per process).

    Raises:
        ValueError: the data set is not token data, or a split holds a tag id outside the
            tag set or an empty sentence.
    """
    from crossent.study.prepare import _load

    dataset = _load(json.dumps(data, sort_keys=True), seed)
    if dataset.kind != "tokens":
        raise ValueError(
            f"Expected token data ((n, T) tags) for a tagging model, but {data['name']!r} is "
            f"{dataset.kind!r}; use a model linear, mlp or cnn for it"
        )
    for name in ("train", "validation", "test"):
        split = getattr(dataset, name)
        check_tag_ids(f"{name} tags", split.y, dataset.num_classes)
        check_sentences(f"{name} tags", split.y)
    return dataset


def noisy_tags(
    tags: torch.Tensor, noise: dict[str, Any], names: list[str], seed: int
) -> torch.Tensor:
    """``tags`` corrupted as a run config's ``noise`` section says (any rate)."""
    from crossent.data.tag_noise import inject_tag_noise

    if noise["rate"] == 0:
        return tags
    return inject_tag_noise(tags, noise["rate"], noise["kind"], names, seed)


def prepare_tag_data(config: dict[str, Any]) -> TagData:
    """Build the tensors of one resolved tagging run config (steps in the module doc)."""
    if config["imbalance_factor"] != 1:
        raise ValueError(
            "Expected imbalance factor 1 for a tagging study (long-tail subsampling is per "
            f"sample), but got {config['imbalance_factor']:g}"
        )
    seed = config["seed"]
    dataset = load_token_dataset(config["data"], seed)
    names = [str(c) for c in dataset.class_names]
    y_train, y_val = dataset.train.y, dataset.validation.y
    noisy_val = y_val
    if config["data"]["validation_labels"] == "noisy":
        noisy_val = noisy_tags(y_val, config["noise"], names, seed + _VALIDATION_SEED_OFFSET)
    return TagData(
        x_train=dataset.train.x,
        y_train=noisy_tags(y_train, config["noise"], names, seed),
        y_train_clean=y_train,
        x_val=dataset.validation.x,
        y_val=noisy_val,
        y_val_clean=y_val,
        x_test=dataset.test.x,
        y_test=dataset.test.y,
        tag_names=names,
        vocabulary=tuple(dataset.vocabulary),
    )
