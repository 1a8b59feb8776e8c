"""class_weights and class_counts: the formulas, Cui et al.'s limits, and bad input."""

import math

import numpy as np
import pytest
import torch

from crossent.weights import class_counts, class_weights

COUNTS = [5000, 500, 50, 5]


def _plain(counts, method, beta):
    """Per-class weights from the definitions, normalised to sum to K (float64, no torch)."""
    if method == "inverse":
        w = [1 / n for n in counts]
    elif method == "inverse_sqrt":
        w = [1 / math.sqrt(n) for n in counts]
    else:
        w = [(1 - beta) / (1 - beta**n) for n in counts]
    return [x * len(w) / sum(w) for x in w]


@pytest.mark.parametrize("method", ["inverse", "inverse_sqrt", "effective_number"])
@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_formulas(method, beta):
    w = class_weights(COUNTS, method=method, beta=beta)
    assert w.dtype == torch.get_default_dtype() and w.shape == (4,)
    assert w.double().tolist() == pytest.approx(_plain(COUNTS, method, beta), rel=1e-6)
    assert w.sum().item() == pytest.approx(4.0, rel=1e-6)


def test_unnormalized_effective_number_is_one_over_effective_number():
    beta = 0.99
    w = class_weights(COUNTS, method="effective_number", beta=beta, normalize=False)
    effective = [(1 - beta**n) / (1 - beta) for n in COUNTS]  # E_n of Cui et al.
    assert w.double().tolist() == pytest.approx([1 / e for e in effective], rel=1e-6)
    # E_n grows with n but stays below 1 / (1 - beta) = 100
    assert all(e < 100 for e in effective) and effective == sorted(effective, reverse=True)
    inverse = class_weights(COUNTS, method="inverse", normalize=False)
    assert inverse.double().tolist() == pytest.approx([1 / n for n in COUNTS], rel=1e-6)


def test_cui_limits():
    # beta = 0: every class has effective number 1 -> uniform weights
    assert class_weights(COUNTS, method="effective_number", beta=0.0).tolist() == [1.0] * 4
    # beta -> 1: E_n -> n -> inverse frequency
    near_one = class_weights(COUNTS, method="effective_number", beta=1 - 1e-9).double()
    inverse = class_weights(COUNTS, method="inverse").double()
    torch.testing.assert_close(near_one, inverse, rtol=1e-4, atol=0)
    # in between: monotone in beta for the rarest class
    rare = [class_weights(COUNTS, method="effective_number", beta=b)[-1] for b in (0.9, 0.99)]
    assert rare[0] < rare[1]


def test_balanced_counts_give_ones():
    for method in ("inverse", "inverse_sqrt", "effective_number"):
        assert class_weights([7, 7, 7], method=method).tolist() == pytest.approx([1, 1, 1])


def test_inputs_list_numpy_tensor_agree():
    a = class_weights(COUNTS)
    b = class_weights(np.array(COUNTS))
    c = class_weights(torch.tensor(COUNTS))
    d = class_weights(torch.tensor(COUNTS, dtype=torch.float64))
    for other in (b, c):
        torch.testing.assert_close(a, other)
    assert d.dtype == torch.float64  # a floating tensor keeps its dtype
    torch.testing.assert_close(a, d.to(a.dtype))


@pytest.mark.parametrize(
    ("counts", "kwargs", "exc", "match"),
    [
        ([10, 0, 3], {}, ValueError, r"class 1 has count 0"),
        ([10, -2], {}, ValueError, r"class 1 has count -2"),
        ([10, 3], {"method": "effective_number", "beta": 1.0}, ValueError, r"`beta` in \[0, 1\)"),
        ([10, 3], {"beta": -0.1}, ValueError, r"`beta` in \[0, 1\)"),
        ([10, 3], {"method": "median"}, ValueError, r"`method` to be one of 'inverse'"),
        ([], {}, ValueError, r"`counts` to be one-dimensional"),
        ([[1, 2]], {}, ValueError, r"`counts` to be one-dimensional"),
        ([1.0, float("inf")], {}, ValueError, r"`counts` to be finite"),
        ("123", {}, TypeError, r"`counts` to be a sequence"),
        (["a", "b"], {}, TypeError, r"`counts` to be numbers"),
    ],
)
def test_bad_input(counts, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        class_weights(counts, **kwargs)


def test_class_counts():
    labels = torch.tensor([[0, 2, 2], [-100, 2, 0]])
    assert class_counts(labels, 4).tolist() == [2, 0, 3, 0]
    assert class_counts(torch.tensor([0, 1, 1, 5]), 2, ignore_index=5).tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        class_counts(labels, 2)
    with pytest.raises(TypeError, match="integer dtype"):
        class_counts(labels.float(), 3)
    # counts feed class_weights directly (a class without examples raises there)
    with pytest.raises(ValueError, match="class 1 has count 0"):
        class_weights(class_counts(labels, 4))
