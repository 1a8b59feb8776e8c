"""CIFAR-10 and Fashion-MNIST, read from the files the user downloads (no torchvision).

Layouts under the data directory (``$CROSSENT_DATA``, default ``~/.crossent/data``):

* ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
  ``batches.meta``: the "CIFAR-10 python version" archive, extracted as it comes. Each
  batch is a pickled dict with ``data`` (uint8, ``(n, 3072)``, channel-major 32x32) and
  ``labels``; ``batches.meta`` holds ``label_names``.
* ``fashion-mnist/`` with ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``: the gzipped IDX files.

Files put straight into the data directory are found too. Pixels are scaled to ``[0, 1]``
and, by default (option ``standardize``), standardised per channel with the training
split's statistics only. The official test split is kept; the validation split is drawn
from the official training set by ``seed``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from crossent.data.base import Dataset, Request, Split, check_bool, find_folder, missing_file
from crossent.data.splits import build_dataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")

# The only globals a CIFAR batch needs: NumPy's array reconstruction (1.x and 2.x names),
# and _codecs.encode, which protocol-2 pickles written by Python 3 use for bytes.
_SAFE_GLOBALS = {
    (module, name)
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "ndarray", "dtype", "scalar")
} | {
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}

# IDX type codes (LeCun's MNIST page): the third byte of the magic number.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists and NumPy arrays, and refuses anything else.

    A pickle can run arbitrary code when loaded; a data file has no reason to.
    """

    def find_class(self, module: str, name: str) -> object:
        """Return an allowed NumPy global; raise ``UnpicklingError`` for anything else."""
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a data file")


def _unpickle(path: Path) -> dict[str, object]:
    with path.open("rb") as handle:
        # encoding="bytes": the official batches were pickled by Python 2.
        raw = _ArrayUnpickler(handle, encoding="bytes").load()
    if not isinstance(raw, dict):
        raise ValueError(f"Expected a pickled dict in {path}, but got {type(raw).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"Expected keys 'data' and 'labels' in {path}, but got {sorted(batch)}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(
            f"Expected 'data' of shape (n, 3072) and n 'labels' in {path}, "
            f"but got {data.shape} and {len(labels)}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _images(pixels: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def _image_dataset(
    request: Request, train: Split, test: Split, names: tuple[str, ...], scale: bool
) -> Dataset:
    for split in (train, test):
        if len(split) and (int(split.y.min()) < 0 or int(split.y.max()) >= len(names)):
            raise ValueError(
                f"Expected labels in [0, {len(names)}) in the {request.name} files, but got "
                f"labels from {int(split.y.min())} to {int(split.y.max())}"
            )
    return build_dataset(request, train, names, "image", scale=scale, test=test)


def load_cifar10(request: Request) -> Dataset:
    """CIFAR-10 (Krizhevsky, 2009) from the python pickle batches: ``(n, 3, 32, 32)``.

    Options: ``standardize`` (default ``True``: per channel, training statistics only).

    References:
        Krizhevsky, `Learning Multiple Layers of Features from Tiny Images
        <https://www.cs.toronto.edu/~kriz/learning-features-2009-TR.pdf>`_, 2009.
    """
    opts = request.take_options({"standardize": True})
    folder = find_folder(request.data_dir, "cifar-10-batches-py", CIFAR10_FILES)
    for name in CIFAR10_FILES:
        if not (folder / name).is_file():
            raise missing_file(
                folder / name,
                f"Download the CIFAR-10 python version (cifar-10-python.tar.gz) from "
                f"{CIFAR10_URL} and extract it in {request.data_dir}, so that "
                f"{folder}/ holds data_batch_1..data_batch_5, test_batch and batches.meta.",
            )
    parts = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    train = _images(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = _images(*_cifar_batch(folder / "test_batch"))
    meta = _unpickle(folder / "batches.meta")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
    return _image_dataset(
        request, train, test, names, check_bool("standardize", opts["standardize"])
    )


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format): magic, big-endian sizes, then data.

    The magic number is ``0x0000TTDD``: two zero bytes, the type code ``TT`` (``0x08`` for
    unsigned bytes) and the number of dimensions ``DD``; then ``DD`` big-endian uint32
    sizes, then the values in row-major order.

    Args:
        path: a ``.gz`` IDX file.

    Returns:
        The array, with the shape and dtype the header declares.
    """
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    zero, code, ndim = struct.unpack_from(">HBB", raw.ljust(4, b"\xff"), 0)
    offset = 4 + 4 * ndim
    if zero != 0 or code not in _IDX_DTYPES or len(raw) < offset:
        raise ValueError(f"Expected an IDX file (magic 0x0000TTDD) in {path}, but got {raw[:4]!r}")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(shape))
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(
            f"Expected {count * dtype.itemsize} data bytes for shape {shape} in {path}, "
            f"but got {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def load_fashion_mnist(request: Request) -> Dataset:
    """Fashion-MNIST (Xiao et al., 2017) from the gzipped IDX files: ``(n, 1, 28, 28)``.

    Options: ``standardize`` (default ``True``: training statistics only).

    References:
        Xiao, Rasul and Vollgraf, `Fashion-MNIST: a Novel Image Dataset for Benchmarking
        Machine Learning Algorithms <https://arxiv.org/abs/1708.07747>`_, 2017.
    """
    opts = request.take_options({"standardize": True})
    folder = find_folder(request.data_dir, "fashion-mnist", FASHION_MNIST_FILES)
    for name in FASHION_MNIST_FILES:
        if not (folder / name).is_file():
            raise missing_file(
                folder / name,
                f"Download {', '.join(FASHION_MNIST_FILES)} from {FASHION_MNIST_URL} "
                f"(folder data/fashion) and put them, still gzipped, in {folder}/.",
            )
    x_train, y_train, x_test, y_test = (read_idx(folder / name) for name in FASHION_MNIST_FILES)
    train = _images(x_train[:, None], y_train)
    test = _images(x_test[:, None], y_test)
    return _image_dataset(
        request, train, test, FASHION_MNIST_CLASSES, check_bool("standardize", opts["standardize"])
    )
