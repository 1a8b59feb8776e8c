"""Data sets, synthetic label noise and class imbalance for crossent studies.

* :func:`load_dataset` — a named data set split into train / validation / test
  (:class:`Dataset` of :class:`Split`), offline: bundled sets (``digits``, the default;
  ``mnist1d``; ``breast_cancer``; ``synthetic``), your own ``csv:PATH`` / ``npz:PATH``, and
  ``cifar10``, ``fashion-mnist``, ``conll2003`` read from files you download.
* :func:`inject_label_noise` — symmetric, uniform or asymmetric label noise, with the
  realised transition matrix.
* :func:`long_tail_indices` — a long-tailed subset (Cui et al., 2019).

Example:
    >>> from crossent.data import load_dataset, inject_label_noise, long_tail_indices
    >>> ds = load_dataset("digits", seed=0)
    >>> noisy, t = inject_label_noise(ds.train.y, 0.4, "symmetric", ds.num_classes, seed=0)
    >>> train = ds.train.with_labels(noisy).subset(long_tail_indices(ds.train.y, 10.0, seed=0))

See ``docs/data.md`` for file layouts and the noise kinds.
"""

from __future__ import annotations

from crossent.data.base import Dataset, Split, cache_dir, default_data_dir
from crossent.data.imbalance import long_tail_counts, long_tail_indices
from crossent.data.noise import (
    CIFAR10_ASYMMETRIC_MAPPING,
    NOISE_KINDS,
    inject_label_noise,
    transition_matrix,
)
from crossent.data.registry import check_dataset_name, dataset_names, load_dataset
from crossent.data.splits import standardize, stratified_split

__all__ = [
    "CIFAR10_ASYMMETRIC_MAPPING",
    "NOISE_KINDS",
    "Dataset",
    "Split",
    "cache_dir",
    "check_dataset_name",
    "dataset_names",
    "default_data_dir",
    "inject_label_noise",
    "load_dataset",
    "long_tail_counts",
    "long_tail_indices",
    "standardize",
    "stratified_split",
    "transition_matrix",
]
