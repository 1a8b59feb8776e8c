"""Bring-your-own data: ``csv:PATH`` and ``npz:PATH``.

* CSV: a header row; the label column (option ``label_column``, default ``"label"``) holds
  class labels of any spelling (``"cat"``, ``"3"``); every other column must be numeric
  and is a feature. Labels are sorted (numerically when they are all integers, otherwise
  as strings) and numbered ``0..K-1``; ``class_names`` keeps their spelling.
* NPZ: arrays ``x`` and ``y`` (or Keras' names ``x_train`` and ``y_train``, as in its
  ``mnist.npz``), optionally ``x_test`` / ``y_test`` (an official test split) and
  ``class_names``; read with ``allow_pickle=False``. ``x`` of shape ``(n, d)`` is
  tabular, ``(n, C, L)`` a sequence, ``(n, C, H, W)`` an image set.

Both are split with :func:`crossent.data.splits.split_three` and standardised with
training statistics only (option ``standardize``, default ``True``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crossent.core.checks import fail
from crossent.data.base import Dataset, Request, Split, check_bool
from crossent.data.splits import build_dataset

_KIND_BY_NDIM = {2: "tabular", 3: "sequence", 4: "image"}
#: Keras' names for the training arrays (``keras.datasets.mnist``'s ``mnist.npz``).
_NPZ_ALIASES = {"x_train": "x", "y_train": "y"}


def encode_labels(
    labels: Sequence[str], class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Number string labels ``0..K-1``.

    Without ``class_names`` the classes are the distinct labels, sorted numerically when
    all are integers (``"2" < "10"``) and as strings otherwise. With ``class_names`` the
    id of a label is its position there, and a label not in it is an error.

    Returns:
        ``(ids, names)``: int64 ids, shape ``(n,)``, and the ``K`` class names.
    """
    if class_names is None:
        distinct = set(labels)
        try:
            names = tuple(sorted(distinct, key=int))
        except ValueError:
            names = tuple(sorted(distinct))
    else:
        names = tuple(class_names)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise fail("labels", f"to be among the class names {list(names)}", unknown[:5])
    return np.array([index[label] for label in labels], dtype=np.int64), names


def _numbers(
    rows: list[list[str]], columns: list[int], header: list[str], path: Path
) -> np.ndarray:
    """Parse the feature cells as float64, naming the first cell that is not a finite number."""
    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, row in enumerate(rows):
        for j, i in enumerate(columns):
            try:
                value = float(row[i])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(
                    f"Expected column {header[i]!r} of {path} to hold finite numbers, "
                    f"but got {row[i]!r} in data row {r + 1}"
                )
            values[r, j] = value
    return values


def _read_csv(path: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    if not header:
        raise ValueError(f"Expected a header row in {path}, but the file is empty")
    header = [h.strip() for h in header]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(
                f"Expected {len(header)} cells in every row of {path} (as in its header), "
                f"but got {len(row)} in data row {number}"
            )
    return header, rows


def load_csv(request: Request, path: Path) -> Dataset:
    """Load ``csv:PATH`` (see the module docstring for the layout).

    Options: ``label_column`` (default ``"label"``), ``delimiter`` (default ``","``),
    ``standardize`` (default ``True``).
    """
    opts = request.take_options({"label_column": "label", "delimiter": ",", "standardize": True})
    header, rows = _read_csv(path, str(opts["delimiter"]))
    label_column = opts["label_column"]
    if label_column not in header:
        raise fail("label_column", f"to name a column of {path} {header}", label_column)
    li = header.index(str(label_column))
    columns = [i for i in range(len(header)) if i != li]
    if not columns or not rows:
        raise ValueError(f"Expected feature columns and data rows in {path}")
    features = _numbers(rows, columns, header, path)
    y, names = encode_labels([row[li].strip() for row in rows])
    return _array_dataset(
        request, path, torch.from_numpy(features).float(), torch.from_numpy(y), names, None, opts
    )


def _npz_labels(
    arrays: dict[str, np.ndarray], path: Path
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Turn ``y`` (and ``y_test``) into class ids, with the class names."""
    given = [str(n) for n in arrays["class_names"].tolist()] if "class_names" in arrays else None
    parts = [arrays["y"]] + ([arrays["y_test"]] if "y_test" in arrays else [])
    joined = np.concatenate([p.reshape(-1) for p in parts])
    if joined.dtype.kind in "US":
        ids, names = encode_labels([str(v) for v in joined.tolist()], given)
    elif joined.dtype.kind in "iuf" and np.array_equal(joined, np.round(joined)):
        ids = joined.astype(np.int64)
        count = len(given) if given is not None else int(ids.max()) + 1 if len(ids) else 0
        if len(ids) and (ids.min() < 0 or ids.max() >= count):
            raise fail(f"y in {path}", f"to hold class ids in [0, {count})", ids.max())
        names = tuple(given) if given is not None else tuple(str(c) for c in range(count))
    else:
        raise TypeError(
            f"Expected `y` in {path} to hold integer class ids or strings, but got {joined.dtype}"
        )
    n = arrays["y"].shape[0]
    return ids[:n], (ids[n:] if "y_test" in arrays else None), names


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an NPZ file, Keras' ``x_train`` / ``y_train`` renamed ``x`` / ``y``."""
    with np.load(path, allow_pickle=False) as handle:
        arrays = {key: handle[key] for key in handle.files}
    for alias, key in _NPZ_ALIASES.items():
        if alias in arrays:
            if key in arrays:
                raise ValueError(f"Expected '{key}' or '{alias}' in {path}, but got both")
            arrays[key] = arrays.pop(alias)
    return arrays


def load_npz(request: Request, path: Path) -> Dataset:
    """Load ``npz:PATH`` (see the module docstring for the keys).

    Options: ``standardize`` (default ``True``).
    """
    opts = request.take_options({"standardize": True})
    if not path.is_file():
        raise FileNotFoundError(f"NPZ file not found: {path}")
    arrays = _read_npz(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise ValueError(
            f"Expected arrays 'x' and 'y' (and 'x_test' with 'y_test', or neither) in {path}, "
            f"but got {sorted(arrays)}"
        )
    y, y_test, names = _npz_labels(arrays, path)
    x = torch.from_numpy(np.asarray(arrays["x"], dtype=np.float32))
    test = None
    if y_test is not None:
        x_test = torch.from_numpy(np.asarray(arrays["x_test"], dtype=np.float32))
        test = Split(x_test, torch.from_numpy(y_test))
    return _array_dataset(request, path, x, torch.from_numpy(y), names, test, opts)


def _array_dataset(
    request: Request,
    path: Path,
    x: torch.Tensor,
    y: torch.Tensor,
    names: tuple[str, ...],
    test: Split | None,
    opts: dict[str, object],
) -> Dataset:
    kind = _KIND_BY_NDIM.get(x.dim())
    if kind is None or (test is not None and test.x.shape[1:] != x.shape[1:]):
        raise fail(
            f"x in {path}",
            "to have shape (n, d), (n, C, L) or (n, C, H, W), the same for x_test",
            x,
        )
    scale = check_bool("standardize", opts["standardize"])
    return build_dataset(request, Split(x, y), names, kind, scale=scale, test=test)
