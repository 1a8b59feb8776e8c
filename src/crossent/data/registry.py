"""Name -> loader, and :func:`load_dataset`, the one entry point."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from crossent.core.checks import check_real, fail
from crossent.data import bundled, conll, files, images, synthetic_ner
from crossent.data.base import Dataset, Request, check_int, default_data_dir

_NAMED: dict[str, Callable[[Request], Dataset]] = {
    "digits": bundled.load_digits,
    "mnist1d": bundled.load_mnist1d,
    "breast_cancer": bundled.load_breast_cancer,
    "synthetic": bundled.load_synthetic,
    "cifar10": images.load_cifar10,
    "fashion-mnist": images.load_fashion_mnist,
    "conll2003": conll.load_conll2003,
    "synthetic-ner": synthetic_ner.load_synthetic_ner,
}
_PREFIXED: dict[str, Callable[[Request, Path], Dataset]] = {
    "csv": files.load_csv,
    "npz": files.load_npz,
    "conll": conll.load_conll_path,
}


def dataset_names() -> tuple[str, ...]:
    """The built-in data set names, the default (``"digits"``) first.

    Files of your own load as ``"csv:PATH"``, ``"npz:PATH"`` and ``"conll:PATH"`` (not
    listed here).

    Example:
        >>> dataset_names()[:3]
        ('digits', 'mnist1d', 'breast_cancer')
    """
    return tuple(_NAMED)


def check_dataset_name(name: object) -> None:
    """Raise unless ``name`` is a built-in name or ``csv:PATH`` / ``npz:PATH`` / ``conll:PATH``.

    Only the name is checked (no file is opened), so a study can reject a bad config before
    any run starts.
    """
    if not isinstance(name, str):
        raise TypeError(f"Expected `name` to be a str, but got {name!r}")
    prefix, sep, path = name.partition(":")
    if sep and prefix in _PREFIXED and path:
        return
    if name not in _NAMED:
        valid = ", ".join([*(repr(n) for n in _NAMED), *(f"'{p}:PATH'" for p in _PREFIXED)])
        raise fail("name", f"to be one of {valid}", name)


def load_dataset(
    name: str = "digits",
    seed: int = 0,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    **options: object,
) -> Dataset:
    """Load a data set by name, split into train / validation / test by ``seed``.

    ================  =====================================================  =============
    name              what                                                   kind
    ================  =====================================================  =============
    ``digits``        scikit-learn 8x8 digits, 1797 rows, 10 classes         tabular (64)
    ``mnist1d``       MNIST-1D, 16000 / 4000 rows of length 40, 10 classes   sequence
    ``breast_cancer`` scikit-learn Wisconsin breast cancer, binary           tabular (30)
    ``synthetic``     ``make_classification`` (options are its parameters)   tabular
    ``csv:PATH``      your CSV (option ``label_column``, default ``label``)  tabular
    ``npz:PATH``      your arrays ``x``, ``y`` [, ``x_test``, ``y_test``]    any
    ``cifar10``       CIFAR-10 python batches in ``data_dir``                image
    ``fashion-mnist`` Fashion-MNIST gzipped IDX files in ``data_dir``        image
    ``conll2003``     CoNLL-2003 NER column text in ``data_dir``             tokens
    ``conll:PATH``    your CoNLL column file (or folder of train/valid/test) tokens
    ``synthetic-ner`` generated NER corpus, 3000 sentences, 9 BIO tags       tokens
    ================  =====================================================  =============

    Splits: sets without an official test split are split stratified, ``test_fraction``
    of all rows to test and ``validation_fraction`` of all rows to validation; sets with
    an official test split keep it and draw ``validation_fraction`` of the official
    training rows as validation (``conll2003`` keeps its official validation file too).
    ``seed`` fixes the split. Tabular features are standardised with the training split's
    mean and standard deviation only (option ``standardize``; ``digits`` keeps its pixels
    in ``[0, 1]`` by default); images are scaled to ``[0, 1]`` and standardised per
    channel with training statistics. Nothing is downloaded: ``cifar10``,
    ``fashion-mnist`` and ``conll2003`` read files from ``data_dir`` and, when one is
    missing, raise a one-line ``FileNotFoundError`` saying what to download and where to
    put it (see ``docs/data.md``).

    Args:
        name: a name from :func:`dataset_names`, or ``"csv:PATH"`` / ``"npz:PATH"`` /
            ``"conll:PATH"``.
        seed: seed of the split (``>= 0``).
        data_dir: folder of downloaded data sets; default ``$CROSSENT_DATA`` or
            ``~/.crossent/data``.
        validation_fraction: share of rows for validation, in ``(0, 1)``.
        test_fraction: share of rows for test, in ``(0, 1)``, when there is no official test
            split; ``validation_fraction + test_fraction < 1``.
        **options: loader options (e.g. ``n_classes=5`` for ``synthetic``,
            ``label_column="y"`` for CSV); an unknown option is an error naming the valid ones.

    Returns:
        The :class:`~crossent.data.base.Dataset`.

    Example:
        >>> ds = load_dataset("digits", seed=1)
        >>> len(ds.train), len(ds.validation), len(ds.test), ds.num_classes
        (1168, 270, 359, 10)
    """
    check_dataset_name(name)
    seed = check_int("seed", seed, 0)
    validation_fraction = check_real(
        "validation_fraction", validation_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    test_fraction = check_real(
        "test_fraction", test_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    if validation_fraction + test_fraction >= 1.0:
        raise fail(
            "validation_fraction + test_fraction", "< 1", validation_fraction + test_fraction
        )
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    request = Request(name, seed, folder, validation_fraction, test_fraction, dict(options))
    prefix, sep, path = name.partition(":")
    if sep and prefix in _PREFIXED:
        return _PREFIXED[prefix](request, Path(path).expanduser())
    return _NAMED[name](request)
