import math

import numpy as np
import pytest
import torch

from crossent.data import CIFAR10_ASYMMETRIC_MAPPING, inject_label_noise, transition_matrix

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def balanced(k, per_class):
    return torch.arange(k).repeat(per_class)


def reference_transitions(true, noisy, k):
    """Plain-Python count of (true, noisy) pairs, rows normalised."""
    counts = [[0] * k for _ in range(k)]
    for t, n in zip(true.tolist(), noisy.tolist(), strict=True):
        counts[t][n] += 1
    rows = []
    for i, row in enumerate(counts):
        total = sum(row)
        rows.append([c / total for c in row] if total else [float(i == j) for j in range(k)])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 7, 100, 1003])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 0.5, 0.8, 1.0])
def test_symmetric_flips_exactly_round_rate_n_to_other_classes(n, rate):
    labels = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(n))
    noisy, _ = inject_label_noise(labels, rate, "symmetric", 5, seed=3)
    flipped = noisy != labels
    assert int(flipped.sum()) == round(rate * n)
    assert bool(((noisy >= 0) & (noisy < 5)).all())


def test_symmetric_never_keeps_the_class_and_is_uniform_over_the_others():
    k, per_class = 4, 6000
    labels = balanced(k, per_class)
    noisy, t = inject_label_noise(labels, 1.0, "symmetric", k, seed=0)
    assert bool((noisy != labels).all())
    assert torch.all(torch.diagonal(t) == 0)
    # each off-diagonal entry is 1/3; binomial std with 6000 draws is ~0.006
    off = t[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, 1 / 3), atol=0.03)


def test_symmetric_binary_flips_to_the_other_class():
    labels = torch.tensor([0, 1] * 50)
    noisy, _ = inject_label_noise(labels, 0.3, "symmetric", 2, seed=1)
    changed = noisy != labels
    assert int(changed.sum()) == 30
    assert torch.equal(noisy[changed], 1 - labels[changed])


def test_uniform_resamples_from_all_classes():
    k, n, rate = 5, 50_000, 0.6
    labels = balanced(k, n // k)
    noisy, t = inject_label_noise(labels, rate, "uniform", k, seed=0)
    expected = rate * (k - 1) / k  # 0.48; a resampled label keeps its class w.p. 1/K
    observed = float((noisy != labels).double().mean())
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(observed - expected) < 5 * sigma
    assert torch.allclose(
        torch.diagonal(t), torch.full((k,), 1 - rate + rate / k).double(), atol=0.02
    )


def test_uniform_rate_one_gives_uniform_labels():
    labels = torch.zeros(40_000, dtype=torch.int64)
    noisy, _ = inject_label_noise(labels, 1.0, "uniform", 4, seed=5)
    share = torch.bincount(noisy, minlength=4).double() / len(noisy)
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=torch.float64), atol=0.015)


def test_asymmetric_default_mapping_is_next_class():
    k, per_class, rate = 3, 10_000, 0.3
    labels = balanced(k, per_class)
    noisy, t = inject_label_noise(labels, rate, "asymmetric", k, seed=0)
    changed = noisy != labels
    assert torch.equal(noisy[changed], (labels[changed] + 1) % k)
    for c in range(k):
        assert abs(float(t[c, (c + 1) % k]) - rate) < 0.025
        assert float(t[c, (c + 2) % k]) == 0.0


def test_asymmetric_cifar10_mapping():
    names = {n: i for i, n in enumerate(CIFAR10_NAMES)}
    expected = {
        names["truck"]: names["automobile"],
        names["bird"]: names["airplane"],
        names["deer"]: names["horse"],
        names["cat"]: names["dog"],
        names["dog"]: names["cat"],
    }
    assert CIFAR10_ASYMMETRIC_MAPPING == expected
    labels = balanced(10, 2000)
    noisy, t = inject_label_noise(labels, 0.4, "asymmetric", 10, seed=2, mapping="cifar10")
    for c in range(10):
        if c in expected:
            assert abs(float(t[c, expected[c]]) - 0.4) < 0.05
            assert abs(float(t[c, c]) - 0.6) < 0.05
        else:
            assert float(t[c, c]) == 1.0
    changed = noisy != labels
    pairs = zip(labels[changed].tolist(), noisy[changed].tolist(), strict=True)
    assert all(expected[a] == b for a, b in pairs)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.3, 0.45])
@pytest.mark.parametrize("per_class", [7, 40, 101])
def test_asymmetric_flips_exactly_round_rate_n_of_each_mapped_class(rate, per_class):
    # Wang et al. (2019): an exact share of each class goes to its target, so below 0.5 the
    # true label always stays the majority of its class.
    labels = balanced(10, per_class)
    for mapping, sources in ((None, range(10)), ("cifar10", (9, 2, 4, 3, 5))):
        noisy, t = inject_label_noise(labels, rate, "asymmetric", 10, seed=1, mapping=mapping)
        for c in range(10):
            flipped = int((noisy[labels == c] != c).sum())
            assert flipped == (round(rate * per_class) if c in sources else 0)
            assert float(t[c, c]) > 0.5


def test_asymmetric_custom_mapping_leaves_other_classes_alone():
    labels = balanced(4, 500)
    noisy, t = inject_label_noise(labels, 0.45, "asymmetric", 4, seed=0, mapping={0: 3})
    assert torch.equal(noisy[labels != 0], labels[labels != 0])
    assert set(noisy[labels == 0].tolist()) == {0, 3}
    assert torch.equal(t[1:], torch.eye(4, dtype=torch.float64)[1:])


def test_transition_matrix_matches_counts_and_rows_sum_to_one():
    labels = torch.tensor([0, 0, 0, 1, 1, 3, 3, 3, 3])  # class 2 absent
    for kind, rate in [("symmetric", 0.5), ("uniform", 0.7), ("asymmetric", 0.4)]:
        noisy, t = inject_label_noise(labels, rate, kind, 4, seed=11)
        assert t.shape == (4, 4) and t.dtype == torch.float64
        assert torch.allclose(t.sum(dim=1), torch.ones(4, dtype=torch.float64))
        assert torch.allclose(t, reference_transitions(labels, noisy, 4))
        assert torch.equal(t[2], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(
        transition_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2),
        torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64),
    )


def test_rate_zero_is_identity():
    labels = balanced(6, 20)
    for kind in ("symmetric", "uniform", "asymmetric"):
        noisy, t = inject_label_noise(labels, 0.0, kind, 6, seed=0)
        assert torch.equal(noisy, labels)
        assert torch.equal(t, torch.eye(6, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["symmetric", "uniform", "asymmetric"])
def test_reproducible_and_independent_of_global_rng(kind):
    labels = balanced(7, 100)
    torch.manual_seed(0)
    first, t1 = inject_label_noise(labels, 0.4, kind, 7, seed=42)
    state = torch.get_rng_state()
    torch.manual_seed(12345)
    torch.rand(10)
    second, t2 = inject_label_noise(labels, 0.4, kind, 7, seed=42)
    assert torch.equal(first, second) and torch.equal(t1, t2)
    other, _ = inject_label_noise(labels, 0.4, kind, 7, seed=43)
    assert not torch.equal(first, other)
    # the global generator is not advanced by the call
    torch.set_rng_state(state)
    expected = torch.rand(3)
    torch.set_rng_state(state)
    inject_label_noise(labels, 0.4, kind, 7, seed=42)
    assert torch.equal(torch.rand(3), expected)


def test_keeps_dtype_shape_and_leaves_input_alone():
    labels = balanced(3, 10).to(torch.int32).reshape(5, 6)
    before = labels.clone()
    noisy, _ = inject_label_noise(labels, 0.5, "symmetric", 3, seed=0)
    assert noisy.dtype == torch.int32 and noisy.shape == (5, 6)
    assert torch.equal(labels, before)
    assert int((noisy != labels).sum()) == 15


def test_ignore_index_positions_are_untouched_and_not_counted():
    tags = torch.tensor([[0, 1, 2, -100, -100], [2, 2, 1, 0, -100]])
    noisy, t = inject_label_noise(tags, 1.0, "symmetric", 3, seed=0)
    assert torch.equal(noisy[tags == -100], tags[tags == -100])
    assert bool((noisy[tags != -100] != tags[tags != -100]).all())
    assert torch.allclose(t.sum(1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "exception", "message"),
    [
        ({"rate": -0.1}, ValueError, r"Expected `rate` in \[0, 1\], but got -0.1"),
        ({"rate": 1.5}, ValueError, r"`rate`"),
        ({"rate": float("nan")}, ValueError, r"`rate`"),
        ({"rate": "0.2"}, TypeError, r"`rate`"),
        ({"kind": "asymmetric", "rate": 0.5}, ValueError, r"`rate` < 0.5 .*majority"),
        ({"kind": "pairflip"}, ValueError, r"`kind` to be one of"),
        (
            {"num_classes": 1, "labels": torch.zeros(4, dtype=torch.int64)},
            ValueError,
            "num_classes",
        ),
        (
            {"labels": torch.tensor([0, 5])},
            ValueError,
            r"`labels` to be class ids in \[0, 3\) or -100, but got 5",
        ),
        ({"labels": torch.tensor([0.0, 1.0])}, TypeError, "integer dtype"),
        ({"labels": [0, 1]}, TypeError, "torch.Tensor or a numpy.ndarray"),
        ({"labels": np.array([0.0, 1.0])}, TypeError, "integer dtype"),
        ({"seed": -1}, ValueError, "`seed` >= 0"),
        ({"mapping": {0: 1}}, ValueError, "only 'asymmetric'"),
        ({"kind": "asymmetric", "mapping": {0: 3}}, ValueError, "`mapping`"),
        ({"kind": "asymmetric", "mapping": "cifar10"}, ValueError, "`num_classes` to be 10"),
        ({"kind": "asymmetric", "mapping": "mnist"}, ValueError, "`mapping` to be one of"),
    ],
)
def test_bad_arguments(kwargs, exception, message):
    args = {
        "labels": torch.tensor([0, 1, 2]),
        "rate": 0.2,
        "kind": "symmetric",
        "num_classes": 3,
        "seed": 0,
    }
    args.update(kwargs)
    mapping = args.pop("mapping", None)
    with pytest.raises(exception, match=message):
        inject_label_noise(**args, mapping=mapping)


def test_uniform_and_asymmetric_accept_a_single_class():
    labels = torch.zeros(5, dtype=torch.int64)
    for kind in ("uniform", "asymmetric"):
        noisy, t = inject_label_noise(labels, 0.3, kind, 1, seed=0)
        assert torch.equal(noisy, labels)
        assert torch.equal(t, torch.ones(1, 1, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["symmetric", "uniform", "asymmetric"])
def test_numpy_labels_give_numpy_results(kind):
    labels = np.repeat(np.arange(5, dtype=np.int32), 20)
    noisy, t = inject_label_noise(labels, 0.4, kind, 5, seed=0)
    assert isinstance(noisy, np.ndarray) and isinstance(t, np.ndarray)
    assert noisy.dtype == np.int32 and noisy.shape == labels.shape
    assert t.dtype == np.float64 and np.allclose(t.sum(axis=1), 1.0)
    expected, _ = inject_label_noise(torch.from_numpy(labels), 0.4, kind, 5, seed=0)
    assert noisy.tolist() == expected.tolist()
    if kind == "symmetric":
        assert (noisy != labels).mean() == 0.4
