import random

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits

from crossent.data import Dataset, Split, check_dataset_name, dataset_names, load_dataset


def all_rows(ds):
    return torch.cat([ds.train.x, ds.validation.x, ds.test.x])


def test_dataset_names():
    names = dataset_names()
    assert names[0] == "digits"
    assert set(names) == {
        "digits",
        "mnist1d",
        "breast_cancer",
        "synthetic",
        "cifar10",
        "fashion-mnist",
        "conll2003",
        "synthetic-ner",
    }


def test_digits_shapes_sizes_and_scaling():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and ds.name == "digits" and ds.kind == "tabular"
    assert ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1168, 270, 359)
    assert ds.train.x.shape == (1168, 64) and ds.train.x.dtype == torch.float32
    assert ds.train.y.dtype == torch.int64
    x = all_rows(ds)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # every row of scikit-learn's digits appears exactly once, divided by 16
    reference = torch.from_numpy(load_digits().data / 16.0).float()
    ours = torch.sort(x.sum(1) * 1000 + x[:, 10]).values
    theirs = torch.sort(reference.sum(1) * 1000 + reference[:, 10]).values
    assert torch.allclose(ours, theirs)


def test_digits_splits_are_stratified_and_seeded():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    whole = torch.bincount(torch.from_numpy(load_digits().target)).double()
    share = torch.bincount(a.test.y, minlength=10).double() / len(a.test)
    assert torch.allclose(share, whole / whole.sum(), atol=0.01)


def test_breast_cancer_is_binary_and_standardised_with_train_statistics():
    ds = load_dataset("breast_cancer", seed=2)
    assert ds.num_classes == 2 and ds.class_names == ("malignant", "benign")
    assert ds.train.x.shape[1] == 30
    assert len(ds.train) + len(ds.validation) + len(ds.test) == len(load_breast_cancer().target)
    assert torch.allclose(ds.train.x.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(ds.train.x.std(0, correction=0), torch.ones(30), atol=1e-4)
    raw = load_dataset("breast_cancer", seed=2, standardize=False)
    mean = raw.train.x.double().mean(0)
    std = raw.train.x.double().std(0, correction=0)
    assert torch.allclose(ds.test.x.double(), (raw.test.x.double() - mean) / std, atol=1e-5)
    assert torch.equal(ds.test.y, raw.test.y)


def test_synthetic_options():
    options = {"n_samples": 300, "n_features": 7, "n_informative": 4, "n_classes": 3}
    ds = load_dataset("synthetic", seed=0, **options)
    assert ds.num_classes == 3 and ds.class_names == ("0", "1", "2")
    assert ds.train.x.shape[1] == 7
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (195, 45, 60)
    # `seed` changes only the split: the same 300 rows come back, in other splits
    raw = load_dataset("synthetic", seed=0, standardize=False, **options)
    resplit = load_dataset("synthetic", seed=5, standardize=False, **options)
    assert not torch.equal(resplit.test.x, raw.test.x)
    assert torch.equal(
        torch.sort(all_rows(resplit)[:, 0]).values, torch.sort(all_rows(raw)[:, 0]).values
    )
    # `random_state` changes the data
    other_data = load_dataset("synthetic", seed=0, random_state=1, **options)
    assert not torch.allclose(all_rows(other_data).abs().sum(), all_rows(ds).abs().sum())


def test_synthetic_labels_are_clean_by_default():
    # scikit-learn flips 1% of labels by default (flip_y=0.01); crossent sets flip_y=0, so a
    # linear class_sep=5 problem with one cluster per class is separable by class means.
    ds = load_dataset(
        "synthetic",
        n_samples=600,
        n_features=2,
        n_informative=2,
        n_redundant=0,
        n_classes=2,
        n_clusters_per_class=1,
        class_sep=5.0,
        standardize=False,
    )
    x = all_rows(ds)
    y = torch.cat([ds.train.y, ds.validation.y, ds.test.y])
    direction = x[y == 1].mean(0) - x[y == 0].mean(0)
    score = (x - (x[y == 1].mean(0) + x[y == 0].mean(0)) / 2) @ direction
    assert bool(((score > 0).long() == y).all())


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"`digits option` to be one of 'standardize'"):
        load_dataset("digits", n_samples=5)
    with pytest.raises(ValueError, match="'class_sep'"):
        load_dataset("synthetic", sep=2.0)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"`name` to be one of 'digits', .*'csv:PATH'") as info:
        load_dataset("mnist")
    assert "conll2003" in str(info.value) and "npz:PATH" in str(info.value)
    with pytest.raises(ValueError, match="`name`"):
        check_dataset_name("csv:")
    check_dataset_name("csv:some/file.csv")
    check_dataset_name("npz:x.npz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "`seed` >= 0"),
        ({"validation_fraction": 0.0}, r"`validation_fraction` in \(0, 1\)"),
        ({"test_fraction": 1.0}, r"`test_fraction` in \(0, 1\)"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "< 1"),
        ({"validation_fraction": 1e-4}, "non-empty"),
    ],
)
def test_bad_load_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("digits", **kwargs)


def test_split_and_dataset_checks():
    with pytest.raises(ValueError, match="as many rows"):
        Split(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64"):
        Split(torch.zeros(3, 2), torch.zeros(3))
    s = Split(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`kind`"):
        Dataset("d", s, s, s, 2, ("a", "b"), "text")
    with pytest.raises(ValueError, match="`class_names`"):
        Dataset("d", s, s, s, 3, ("a", "b"), "tabular")
    assert torch.equal(s.with_labels(torch.tensor([1, 1])).y, torch.tensor([1, 1]))


def test_mnist1d_generates_once_then_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSENT_CACHE", str(tmp_path))
    py_state, np_state = random.getstate(), np.random.get_state()
    ds = load_dataset("mnist1d", seed=0, num_samples=200)
    # make_dataset reseeds the global RNGs; the loader hands the caller's state back
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert ds.kind == "sequence" and ds.num_classes == 10
    assert ds.train.x.shape[1:] == (1, 40) and ds.train.x.dtype == torch.float32
    # the package keeps 80% for training: 160 / 40; validation is 15% of the 160
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (136, 24, 40)
    assert len(list(tmp_path.glob("mnist1d-200-*.npz"))) == 1

    import mnist1d.data

    def fail(*args, **kwargs):
        raise AssertionError("the cached arrays should have been used")

    monkeypatch.setattr(mnist1d.data, "make_dataset", fail)
    again = load_dataset("mnist1d", seed=0, num_samples=200)
    assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.test.y, ds.test.y)
    other_seed = load_dataset("mnist1d", seed=1, num_samples=200)
    assert torch.equal(other_seed.test.x, ds.test.x)  # the official test split is fixed
    assert not torch.equal(other_seed.train.x, ds.train.x)


def test_mnist1d_rejects_tiny_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSENT_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="`num_samples` >= 100"):
        load_dataset("mnist1d", num_samples=10)
