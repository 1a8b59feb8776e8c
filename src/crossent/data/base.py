"""The containers every loader returns, and the small helpers all loaders share.

A :class:`Dataset` holds three :class:`Split` objects (train, validation, test) and what a
study needs to know about them: the number of classes, their names and the kind of input.
Where files live: ``$CROSSENT_DATA`` (default ``~/.crossent/data``) for data sets the user
downloads, ``$CROSSENT_CACHE`` (default ``~/.cache/crossent``) for generated ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crossent.core.checks import check_choice, check_tensor, fail

KINDS = ("tabular", "sequence", "image", "tokens")


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs and integer labels.

    Shapes by :attr:`Dataset.kind`:

    * ``"tabular"``: ``x`` is float32 ``(n, d)``, ``y`` is int64 ``(n,)``;
    * ``"sequence"``: ``x`` is float32 ``(n, 1, L)`` (one channel, as ``Conv1d`` expects);
    * ``"image"``: ``x`` is float32 ``(n, C, H, W)``;
    * ``"tokens"``: ``x`` is int64 token ids ``(n, T)`` (0 is padding) and ``y`` is int64 tag
      ids ``(n, T)`` with ``-100`` (PyTorch's ``ignore_index``) at padded positions.

    Attributes:
        x: the inputs; the first dimension indexes examples.
        y: the labels; ``y.shape[0] == x.shape[0]``.

    Example:
        >>> s = Split(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]))
        >>> len(s), len(s.subset(torch.tensor([1, 2])))
        (4, 2)
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        check_tensor("x", self.x)
        check_tensor("y", self.y)
        if self.y.dtype != torch.int64:
            raise TypeError(f"Expected `y` to have dtype torch.int64, but got {self.y.dtype}")
        if self.x.dim() == 0 or self.y.dim() == 0 or self.x.shape[0] != self.y.shape[0]:
            raise fail("y", f"to have as many rows as `x` (shape {tuple(self.x.shape)})", self.y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: torch.Tensor) -> Split:
        """Return the examples at ``indices`` (e.g. from :func:`long_tail_indices`)."""
        return Split(self.x[indices], self.y[indices])

    def with_labels(self, y: torch.Tensor) -> Split:
        """Return the same inputs with other labels (e.g. noisy ones)."""
        return Split(self.x, y)


@dataclass(frozen=True)
class Dataset:
    """A data set split three ways, with its classes.

    Attributes:
        name: the name it was loaded by (``"digits"``, ``"csv:data/iris.csv"``, ...).
        train: the training split (noise and imbalance are applied to it by a study).
        validation: held out from the training data, for temperature scaling and tuning.
        test: the evaluation split, always with clean labels and never resampled.
        num_classes: ``K``; labels are in ``[0, K)``.
        class_names: ``K`` names, one per class id.
        kind: ``"tabular"``, ``"sequence"``, ``"image"`` or ``"tokens"`` (see :class:`Split`).
        vocabulary: for ``kind="tokens"``, the word of each token id (``vocabulary[0]`` is
            ``"<pad>"``, ``vocabulary[1]`` is ``"<unk>"``); empty otherwise.

    Example:
        >>> from crossent.data import load_dataset
        >>> ds = load_dataset("digits")
        >>> ds.num_classes, ds.kind, ds.input_shape
        (10, 'tabular', (64,))
    """

    name: str
    train: Split
    validation: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    kind: str
    vocabulary: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if len(self.class_names) != self.num_classes:
            raise fail(
                "class_names", f"to hold num_classes={self.num_classes} names", self.class_names
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, ``x.shape[1:]`` (``(T,)`` for tokens: sentence length)."""
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class Request:
    """What :func:`crossent.data.load_dataset` passes to a loader (internal)."""

    name: str
    seed: int
    data_dir: Path
    validation_fraction: float
    test_fraction: float
    options: Mapping[str, object]

    def take_options(self, defaults: Mapping[str, object]) -> dict[str, object]:
        """Return ``defaults`` updated by the user's options; unknown keys are an error."""
        for key in self.options:
            if key not in defaults:
                allowed = ", ".join(repr(k) for k in defaults) or "none"
                raise fail(f"{self.label} option", f"to be one of {allowed}", key)
        return {**defaults, **self.options}

    @property
    def label(self) -> str:
        """The data set's name without its path (``"csv"`` for ``"csv:PATH"``)."""
        return self.name.split(":", 1)[0]


def check_int(name: str, value: object, low: int) -> int:
    """Return ``value`` after checking it is an ``int`` (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected `{name}` to be an int, but got {value!r}")
    if value < low:
        raise fail(name, f">= {low}", value)
    return value


def as_labels(name: str, labels: object) -> tuple[torch.Tensor, bool]:
    """Return ``labels`` as a tensor and whether they came as a NumPy array.

    The label functions take a ``torch.Tensor`` or a ``numpy.ndarray`` and answer in the same
    type; NumPy integer labels are copied to an int64 tensor.
    """
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu":
            raise TypeError(f"Expected `{name}` to have an integer dtype, but got {labels.dtype}")
        return torch.from_numpy(labels.astype(np.int64)), True
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"Expected `{name}` to be a torch.Tensor or a numpy.ndarray, "
            f"but got {type(labels).__name__}"
        )
    return labels, False


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` after checking it is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a bool, but got {value!r}")
    return value


def default_data_dir() -> Path:
    """Where user-downloaded data sets live: ``$CROSSENT_DATA`` or ``~/.crossent/data``."""
    env = os.environ.get("CROSSENT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".crossent" / "data"


def cache_dir() -> Path:
    """Where generated data sets are cached: ``$CROSSENT_CACHE`` or ``~/.cache/crossent``."""
    env = os.environ.get("CROSSENT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossent"


def find_folder(data_dir: Path, folder: str, names: tuple[str, ...]) -> Path:
    """The folder that holds every file in ``names``: ``data_dir / folder``, else ``data_dir``.

    The documented layout is the sub-folder (as the archive extracts); files put straight
    into the data directory are found too. When neither holds them all, the sub-folder is
    returned, so the missing-file message names the documented place.
    """
    for candidate in (data_dir / folder, data_dir):
        if all((candidate / name).is_file() for name in names):
            return candidate
    return data_dir / folder


def missing_file(path: Path, what: str) -> FileNotFoundError:
    """Build the one-line error for a data file the user has to download first."""
    return FileNotFoundError(f"{path} not found. {what}")
