"""Reading predictions and labels from ``.npz``, ``.npy``, ``.pt``, ``.csv`` and ``.parquet``.

Layouts (names are matched case-insensitively):

* predictions: ``(N, K)`` probabilities or logits, or ``(N,)`` positive-class values.
* ``.npz`` / ``.pt`` (a ``dict`` saved with ``torch.save``): the predictions under ``logits``
  (read as logits) or ``probs`` / ``probabilities`` (read as probabilities) or
  ``predictions`` / ``preds`` / ``scores``; labels, optional, under ``labels`` / ``label`` /
  ``targets`` / ``target`` / ``y``. An archive with a single other array uses it as the
  predictions. A ``.pt`` file may also hold a bare tensor or a ``(predictions, labels)`` pair.
* ``.npy``: the predictions array alone (labels from ``--labels``).
* ``.csv`` (header row required) / ``.parquet``: an optional label column named as above, every
  other column a prediction column in file order (one column: binary positive-class values).
  Column names all starting with ``logit`` mean logits, all starting with ``prob`` mean
  probabilities. A parquet file may instead hold one list column named as the ``.npz`` keys.
* labels files: any of the above holding only labels (an array, a ``labels`` entry or column,
  or a single column), or ``.txt`` with one integer per line.
* other names: ``pred_key`` / ``label_key`` (``--pred-key`` / ``--label-key``) name the
  predictions' and the labels' array or column.

Anything else is a :class:`PredictionFileError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

PREDICTION_KINDS: dict[str, bool | None] = {
    "logits": True,
    "probs": False,
    "probabilities": False,
    "predictions": None,
    "preds": None,
    "scores": None,
}
LABEL_NAMES = ("labels", "label", "targets", "target", "y")
SUFFIXES = (".npz", ".npy", ".pt", ".csv", ".parquet")
LABEL_SUFFIXES = (*SUFFIXES, ".txt")


class PredictionFileError(ValueError):
    """A predictions or labels file that cannot be read; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {' '.join(problem.split())}")


class Predictions(NamedTuple):
    """Predictions read from a file.

    Attributes:
        values: ``(N, K)`` or ``(N,)`` float tensor.
        labels: ``(N,)`` int64 tensor, or ``None`` when the file has none.
        from_logits: ``True``/``False`` when the file names its kind, else ``None``.
    """

    values: torch.Tensor
    labels: torch.Tensor | None
    from_logits: bool | None


def _as_float(path: Path, array: object) -> torch.Tensor:
    values = np.asarray(array)
    if values.dtype.kind not in "biuf" or values.ndim not in (1, 2) or values.shape[0] == 0:
        raise PredictionFileError(
            path,
            f"expected numeric predictions of shape (N, K) or (N,), got {values.dtype} "
            f"array of shape {values.shape}",
        )
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(values))


def _as_labels(path: Path, array: object) -> torch.Tensor:
    values = np.asarray(array)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise PredictionFileError(
            path, f"expected labels of shape (N,), got {values.dtype} array of shape {values.shape}"
        )
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0**63)
        if not np.all(whole):  # NaN, inf, fractions, or too large for int64 class indices
            raise PredictionFileError(path, "labels must be whole numbers (class indices)")
    return torch.from_numpy(values.astype(np.int64))


class _Content(NamedTuple):
    """What a file holds: named arrays (``table=False``) or the columns of a table."""

    arrays: dict[str, np.ndarray]
    table: bool


def _label_name(names: list[str], key: str | None, path: Path) -> str | None:
    """The label array's name: ``key`` (which must exist) or the first of :data:`LABEL_NAMES`."""
    if key is not None:
        return _named(names, key, path, "label_key")
    lower = {name.strip().lower(): name for name in names}
    return next((lower[name] for name in LABEL_NAMES if name in lower), None)


def _prediction_name(names: list[str]) -> str | None:
    lower = {name.strip().lower(): name for name in names}
    return next((lower[name] for name in PREDICTION_KINDS if name in lower), None)


def _named(names: list[str], key: str, path: Path, argument: str) -> str:
    """The name among ``names`` equal to ``key`` (exactly, else ignoring case and spaces)."""
    if key in names:
        return key
    match = [name for name in names if name.strip().lower() == key.strip().lower()]
    if not match:
        raise PredictionFileError(
            path, f"no array or column named {key!r} ({argument}); found {names}"
        )
    return match[0]


def _kind(name: str) -> bool | None:
    """Logits (``True``), probabilities (``False``) or unknown (``None``) from a name."""
    lower = name.strip().lower()
    if lower in PREDICTION_KINDS:
        return PREDICTION_KINDS[lower]
    if lower.startswith("logit"):
        return True
    return False if lower.startswith("prob") else None


def _pick(
    path: Path, arrays: dict[str, np.ndarray], keys: tuple[str | None, str | None]
) -> Predictions:
    """Predictions and labels from named arrays (``.npz``, ``.pt``, ``.npy``)."""
    pred_key, label_key = keys
    label_name = _label_name(list(arrays), label_key, path)
    if pred_key is not None:
        pred_name: str | None = _named(list(arrays), pred_key, path, "pred_key")
    else:
        pred_name = _prediction_name([name for name in arrays if name != label_name])
    kind = None if pred_name is None else _kind(pred_name)
    if pred_name is None:
        others = [name for name in arrays if name != label_name]
        if len(others) != 1:
            raise PredictionFileError(
                path,
                f"expected the predictions under one of {', '.join(PREDICTION_KINDS)}, "
                f"found {sorted(arrays) or 'nothing'} (name the array with pred_key, "
                "--pred-key in the CLI)",
            )
        pred_name = others[0]
    labels = None if label_name is None else _as_labels(path, arrays[label_name])
    return Predictions(_as_float(path, arrays[pred_name]), labels, kind)


def _from_columns(
    path: Path, columns: dict[str, np.ndarray], keys: tuple[str | None, str | None]
) -> Predictions:
    """Predictions from a table: an optional label column, the others predictions."""
    pred_key, label_key = keys
    label_name = _label_name(list(columns), label_key, path)
    pred_names = [name for name in columns if name != label_name]
    if pred_key is not None:
        pred_names = [_named(list(columns), pred_key, path, "pred_key")]
    if not pred_names:
        raise PredictionFileError(path, "expected at least one prediction column")
    # one column: binary values, or a list column of (N, K); several: one per class
    values = columns[pred_names[0]]
    if len(pred_names) > 1:
        values = np.stack([columns[name] for name in pred_names], axis=1)
    kinds = {_kind(name) for name in pred_names}
    kind = kinds.pop() if len(kinds) == 1 else None
    labels = None if label_name is None else _as_labels(path, columns[label_name])
    return Predictions(_as_float(path, values), labels, kind)


def _numpy(value: object) -> np.ndarray:
    tensor = torch.as_tensor(value).detach()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


def _numpy_safe_globals() -> list[object]:
    """What ``torch.load(weights_only=True)`` must allow to rebuild NumPy arrays, and no more."""
    core = getattr(np, "_core", None) or np.core  # NumPy 2 renamed numpy.core
    kinds = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8)
    kinds += (np.float16, np.float32, np.float64)
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *(type(np.dtype(k)) for k in kinds)]


def _load_pt(path: Path) -> _Content:
    # Tensors load as they are; NumPy arrays (torch.save of a dict of arrays) are allowed too,
    # still without unpickling arbitrary code.
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, torch.Tensor):
        return _Content({"predictions": _numpy(content)}, table=False)
    if isinstance(content, (tuple, list)) and len(content) == 2:
        return _Content({"predictions": _numpy(content[0]), "labels": _numpy(content[1])}, False)
    if isinstance(content, dict):
        return _Content({str(k): _numpy(v) for k, v in content.items()}, table=False)
    raise PredictionFileError(
        path, f"expected a tensor, a dict or a (predictions, labels) pair, got {type(content)}"
    )


def _load_csv(path: Path) -> _Content:
    # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte-order mark, which would
    # otherwise stick to the first column's name
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise PredictionFileError(path, "the file is empty (a header row is required)")
    body = np.loadtxt(
        path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64, encoding="utf-8-sig"
    )
    if body.shape[0] == 0:
        raise PredictionFileError(path, "no data rows after the header")
    if body.shape[1] != len(header):
        raise PredictionFileError(
            path, f"the header has {len(header)} columns but the rows have {body.shape[1]}"
        )
    return _Content({name: body[:, i] for i, name in enumerate(header)}, table=True)


def _load_parquet(path: Path) -> _Content:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise PredictionFileError(
            path, "reading .parquet needs pyarrow: pip install 'crossent[io]'"
        ) from err
    table = pq.read_table(path)
    if table.num_rows == 0:
        raise PredictionFileError(path, "the table has no rows")
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = column.to_numpy(zero_copy_only=False)
        if values.dtype == object:  # a list column: one row of K values per prediction
            values = np.stack([np.asarray(row, dtype=np.float64) for row in values])
        columns[name] = values
    return _Content(columns, table=True)


def _load(path: Path) -> _Content:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return _Content({name: archive[name] for name in archive.files}, table=False)
    if suffix == ".npy":
        return _Content({"predictions": np.load(path, allow_pickle=False)}, table=False)
    if suffix == ".pt":
        return _load_pt(path)
    if suffix == ".csv":
        return _load_csv(path)
    if suffix == ".parquet":
        return _load_parquet(path)
    if suffix == ".txt":
        return _Content({"labels": np.loadtxt(path, ndmin=1, encoding="utf-8-sig")}, table=False)
    raise PredictionFileError(
        path, f"unsupported file type {suffix!r}: expected one of {', '.join(LABEL_SUFFIXES)}"
    )


def _load_checked(path: Path) -> _Content:
    """:func:`_load`, with every parser failure turned into a :class:`PredictionFileError`."""
    if not path.is_file():
        raise PredictionFileError(path, "no such file")
    try:
        with warnings.catch_warnings():  # parser warnings on bad files: the error says it all
            warnings.simplefilter("ignore")
            return _load(path)
    except PredictionFileError:
        raise
    except Exception as err:  # any parser failure (numpy, pickle, zip, arrow) is "malformed"
        raise PredictionFileError(
            path, f"cannot read the file ({type(err).__name__}: {err})"
        ) from err


def read_predictions(
    path: str | Path, *, pred_key: str | None = None, label_key: str | None = None
) -> Predictions:
    """Read predictions (and labels, where the file has them) from a file.

    Args:
        path: a ``.npz``, ``.npy``, ``.pt``, ``.csv`` or ``.parquet`` file (layouts in the
            module docstring).
        pred_key: the name of the predictions' array (``.npz``, a ``.pt`` dict) or column
            (``.csv``/``.parquet``: a list column, or one column of binary values), for files
            that use other names; it must exist. Names starting with ``logit`` / ``prob`` say
            the kind as the default names do.
        label_key: the name of the labels' array or column; it must exist.

    Returns:
        :class:`Predictions` ``(values, labels, from_logits)``.

    Raises:
        PredictionFileError: the file is missing, unreadable or malformed.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "p.npz"
        >>> np.savez(path, logits=np.zeros((3, 2)), labels=np.array([0, 1, 1]))
        >>> read_predictions(path).from_logits
        True
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise PredictionFileError(
            path, f"unsupported file type {path.suffix!r}: expected one of {', '.join(SUFFIXES)}"
        )
    content = _load_checked(path)
    reader = _from_columns if content.table else _pick
    predictions = reader(path, content.arrays, (pred_key, label_key))
    if predictions.labels is not None and len(predictions.labels) != len(predictions.values):
        raise PredictionFileError(
            path, f"{len(predictions.values)} predictions but {len(predictions.labels)} labels"
        )
    return predictions


def read_labels(path: str | Path, *, key: str | None = None) -> torch.Tensor:
    """Read ``(N,)`` integer labels from a file (layouts in the module docstring).

    Args:
        path: a ``.npy``, ``.npz``, ``.pt``, ``.csv``, ``.parquet`` or ``.txt`` file holding a
            label array, entry or column (or a single array or column).
        key: the name of the labels' array or column, for files that use another name; it
            must exist.

    Returns:
        An int64 tensor of shape ``(N,)``.

    Raises:
        PredictionFileError: the file is missing, unreadable or malformed.
    """
    path = Path(path)
    arrays = _load_checked(path).arrays
    name = _label_name(list(arrays), key, path)
    if name is None:
        if len(arrays) != 1:
            raise PredictionFileError(
                path, f"expected a single array or a column named one of {', '.join(LABEL_NAMES)}"
            )
        name = next(iter(arrays))
    return _as_labels(path, arrays[name])
