import math

import numpy as np
import pytest
import torch

from crossent.data import long_tail_counts, long_tail_indices, standardize, stratified_split
from crossent.data.base import Split


def counts_of(labels, indices, k):
    return torch.bincount(labels[indices], minlength=k).tolist()


@pytest.mark.parametrize("imbalance_factor", [1.0, 10.0, 50.0, 100.0])
def test_long_tail_counts_follow_the_exponential_profile(imbalance_factor):
    k, n_max = 10, 500
    labels = torch.arange(k).repeat_interleave(n_max)
    kept = counts_of(labels, long_tail_indices(labels, imbalance_factor, seed=0), k)
    # n_c = n_max * IF^(-c/(K-1)) (Cui et al., 2019), floored
    expected = [max(1, int(n_max * imbalance_factor ** (-c / (k - 1)))) for c in range(k)]
    assert kept == expected
    assert kept[0] == n_max
    assert kept[-1] == round(n_max / imbalance_factor)


def test_known_values_for_if_100():
    labels = torch.arange(10).repeat_interleave(5000)
    kept = counts_of(labels, long_tail_indices(labels, 100.0, seed=1), 10)
    # the CIFAR-10-LT profile: 5000 ... 50
    assert kept == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_if_one_keeps_everything_in_order():
    labels = torch.tensor([3, 1, 1, 0, 3, 2])
    assert torch.equal(long_tail_indices(labels, 1.0, seed=0), torch.arange(6))


def test_counts_are_capped_by_what_exists_and_at_least_one():
    labels = torch.cat([torch.zeros(100), torch.ones(2), torch.full((100,), 2)]).long()
    kept = counts_of(labels, long_tail_indices(labels, 4.0, seed=0), 3)
    assert kept == [100, 2, 25]  # class 1 would get 50, has 2
    tiny = torch.arange(3).repeat_interleave(10)
    assert counts_of(tiny, long_tail_indices(tiny, 1000.0, seed=0), 3) == [10, 1, 1]


def test_only_present_classes_are_ranked():
    labels = torch.tensor([7] * 40 + [2] * 40 + [5] * 40)
    kept = torch.bincount(labels[long_tail_indices(labels, 4.0, seed=0)], minlength=8)
    assert kept[2] == 40 and kept[5] == 20 and kept[7] == 10


def test_single_class_keeps_everything():
    labels = torch.full((9,), 4)
    assert len(long_tail_indices(labels, 100.0, seed=0)) == 9
    assert long_tail_counts([9], 100.0) == [9]


def test_seeded_subsampling():
    labels = torch.arange(5).repeat(200)
    a = long_tail_indices(labels, 20.0, seed=3)
    b = long_tail_indices(labels, 20.0, seed=3)
    c = long_tail_indices(labels, 20.0, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, torch.unique(a))  # sorted, no repeats
    assert a.dtype == torch.int64


def test_numpy_labels_give_numpy_indices():
    labels = np.repeat(np.arange(3), 100)
    kept = long_tail_indices(labels, 10.0, seed=0)
    assert isinstance(kept, np.ndarray) and kept.dtype == np.int64
    assert np.bincount(labels[kept]).tolist() == [100, 31, 10]
    assert kept.tolist() == long_tail_indices(torch.from_numpy(labels), 10.0, seed=0).tolist()


@pytest.mark.parametrize(
    ("labels", "factor", "exception", "message"),
    [
        (torch.tensor([0, 1]), 0.5, ValueError, r"`imbalance_factor` in \[1, inf[)\]]"),
        (torch.tensor([0, 1]), math.inf, ValueError, "finite"),
        (torch.tensor([[0, 1]]), 2.0, ValueError, "1-D"),
        (torch.tensor([0.0, 1.0]), 2.0, ValueError, "integer"),
        ([0, 1], 2.0, TypeError, "torch.Tensor or a numpy.ndarray"),
    ],
)
def test_long_tail_bad_arguments(labels, factor, exception, message):
    with pytest.raises(exception, match=message):
        long_tail_indices(labels, factor, seed=0)


def test_stratified_split_sizes_proportions_and_cover():
    labels = torch.tensor([0] * 60 + [1] * 25 + [2] * 15)
    rest, held = stratified_split(labels, 22, seed=0)
    assert len(held) == 22 and len(rest) == 78
    assert torch.equal(torch.sort(torch.cat([rest, held])).values, torch.arange(100))
    # exact shares 13.2, 5.5, 3.3: floors sum to 21, the largest remainder (class 1) gets one
    assert torch.bincount(labels[held]).tolist() == [13, 6, 3]
    again, _ = stratified_split(labels, 22, seed=0)
    other, _ = stratified_split(labels, 22, seed=1)
    assert torch.equal(rest, again) and not torch.equal(rest, other)


def test_stratified_split_rejects_bad_sizes():
    with pytest.raises(ValueError, match="`size` <= the number of labels"):
        stratified_split(torch.tensor([0, 1]), 3, seed=0)
    with pytest.raises(ValueError, match="`size` >= 0"):
        stratified_split(torch.tensor([0, 1]), -1, seed=0)


def test_standardize_uses_training_statistics_only():
    train = Split(torch.tensor([[1.0, 5.0], [3.0, 5.0]]), torch.tensor([0, 1]))
    test = Split(torch.tensor([[5.0, 7.0]]), torch.tensor([0]))
    new_train, new_test = standardize(train, test)
    assert torch.allclose(new_train.x, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    # mean (2, 5), std (1, constant -> 1)
    assert torch.allclose(new_test.x, torch.tensor([[3.0, 2.0]]))


def test_standardize_images_per_channel():
    x = torch.stack([torch.full((2, 3, 3), 1.0), torch.full((2, 3, 3), 3.0)])
    x[:, 1] *= 10
    (out,) = standardize(Split(x, torch.tensor([0, 1])))
    assert torch.allclose(out.x[0], torch.full((2, 3, 3), -1.0))
    assert torch.allclose(out.x[1], torch.full((2, 3, 3), 1.0))
