"""Bad input is test data: (kwargs, exception, message regex)."""

import warnings

import pytest
import torch

import crossent
from crossent import ProbabilityInputWarning

X = torch.randn(4, 5)
T = torch.tensor([0, 1, 2, 3])

CASES = [
    (dict(target=torch.tensor([0, 1, 7, 3])), ValueError, r"`target`.*\[0, 5\).*index 7"),
    (dict(target=torch.tensor([0, -3, 1, 2])), ValueError, r"negative index -3.*not ignore_index"),
    (dict(target=torch.tensor([0, 1, 2])), ValueError, r"`target`.*shape \(4,\)"),
    (dict(target=torch.rand(4, 6)), ValueError, r"`target`.*shape of `input`"),
    (dict(target=torch.ones(4, dtype=torch.bool)), TypeError, r"`target`"),
    (dict(target=[0, 1, 2, 3]), TypeError, r"`target`.*torch.Tensor"),
    (dict(input=torch.tensor([[1, 2]])), TypeError, r"`input`.*floating"),
    (dict(input=torch.tensor(1.0)), ValueError, r"`input`"),
    (dict(weight=torch.ones(3)), ValueError, r"`weight`.*\(5,\)"),
    (dict(weight=torch.tensor([1.0, -1, 1, 1, 1])), ValueError, r"`weight`.*>= 0"),
    (dict(weight=torch.tensor([1.0, float("nan"), 1, 1, 1])), ValueError, r"`weight`.*finite"),
    (dict(label_smoothing=1.5), ValueError, r"`label_smoothing`.*\[0, 1\].*1.5"),
    (dict(label_smoothing=-0.1), ValueError, r"`label_smoothing`.*\[0, 1\]"),
    (dict(label_smoothing=0.9, smoothing="others"), ValueError, r"\(K-1\)/K = 0.8"),
    (dict(smoothing="both"), ValueError, r"`smoothing`.*'uniform', 'others'.*'both'"),
    (dict(reduction="avg"), ValueError, r"`reduction`.*'none', 'mean', 'sum'.*'avg'"),
    (dict(z_loss=-1.0), ValueError, r"`z_loss`"),
    (
        dict(
            input=torch.randn(3, 1),
            target=torch.zeros(3, dtype=torch.long),
            label_smoothing=0.1,
            smoothing="others",
        ),
        ValueError,
        r"`smoothing`.*K = 1",
    ),
    (
        dict(target=torch.softmax(torch.randn(4, 5), 1), label_smoothing=0.1, smoothing="others"),
        ValueError,
        r"`smoothing`.*'uniform' for probability targets",
    ),
    (dict(ignore_index=1.5), TypeError, r"`ignore_index`"),
    (
        dict(input=torch.randn(5), target=torch.tensor([1, 2])),
        ValueError,
        r"`target`.*shape \(\) or \(1,\).*input of shape \(C,\), but got \(2,\)",
    ),
    (
        dict(input=torch.randn(5), target=torch.rand(4)),
        ValueError,
        r"`target`.*shape \(5,\) \(probabilities\).*but got \(4,\)",
    ),
]


@pytest.mark.parametrize("kwargs,exc,pattern", CASES)
def test_cross_entropy_rejects(kwargs, exc, pattern):
    args = dict(input=X, target=T)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        crossent.cross_entropy(**args)


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        c
        for c in CASES
        if "target" not in c[0] and "input" not in c[0] and "ignore_index" not in c[0]
    ],
)
def test_module_rejects_at_call_or_construction(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        crossent.nn.CrossEntropyLoss(**kwargs)(X, T)


def test_validation_switch_skips_content_checks():
    crossent.set_validation(False)
    # negative class weights are only detected by reading the tensor
    crossent.cross_entropy(X, T, weight=torch.tensor([1.0, -1, 1, 1, 1]))


BCE_CASES = [
    (dict(target=torch.rand(3)), ValueError, r"`target`.*shape of `input`"),
    (dict(target=torch.tensor([0.0, 2.0, 0.5, 1.0])), ValueError, r"`target`.*\[0, 1\]"),
    (dict(pos_weight=torch.ones(3)), ValueError, r"`pos_weight`.*broadcast"),
    (dict(weight=torch.ones(2, 4, 1)), ValueError, r"`weight`.*broadcast"),
    (dict(reduction="mean "), ValueError, r"`reduction`"),
    (dict(label_smoothing=2), ValueError, r"`label_smoothing`"),
]


@pytest.mark.parametrize("kwargs,exc,pattern", BCE_CASES)
def test_bce_rejects(kwargs, exc, pattern):
    args = dict(input=torch.randn(4), target=torch.rand(4))
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        crossent.binary_cross_entropy_with_logits(**args)


def _probs_call():
    return crossent.cross_entropy(torch.softmax(torch.randn(8, 5), 1), torch.randint(0, 5, (8,)))


def test_double_softmax_warning_once_per_call_site():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            _probs_call()
    hits = [w for w in caught if issubclass(w.category, ProbabilityInputWarning)]
    assert len(hits) == 1
    assert "logits" in str(hits[0].message)
    assert hits[0].filename == __file__  # points at the caller, not at crossent


def test_double_softmax_warning_points_at_the_caller_of_a_module_and_unbatched_input():
    module = crossent.nn.CrossEntropyLoss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module(torch.softmax(torch.randn(8, 5), 1), torch.randint(0, 5, (8,)))
        crossent.cross_entropy(torch.tensor([0.2, 0.3, 0.5]), torch.tensor(1))
    hits = [w for w in caught if issubclass(w.category, ProbabilityInputWarning)]
    assert [w.filename for w in hits] == [__file__, __file__]  # not torch's Module.__call__


def test_module_checks_ignore_index_and_weight_at_construction():
    with pytest.raises(TypeError, match="`ignore_index`"):
        crossent.nn.CrossEntropyLoss(ignore_index="x")
    with pytest.raises(ValueError, match="`weight`"):
        crossent.nn.CrossEntropyLoss(weight=torch.ones(2, 2))


def test_double_softmax_warning_never_changes_result_and_can_be_disabled():
    p = torch.softmax(torch.randn(8, 5), 1)
    t = torch.randint(0, 5, (8,))
    with pytest.warns(ProbabilityInputWarning):
        warned = crossent.cross_entropy(p, t)
    crossent.set_probability_warning(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = crossent.cross_entropy(p, t)
    assert torch.equal(warned, silent)


def test_no_warning_for_ordinary_logits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crossent.cross_entropy(torch.randn(8, 5), torch.randint(0, 5, (8,)))


INFINITE_HYPERPARAMETERS = [
    (crossent.focal_loss, "gamma"),
    (crossent.symmetric_cross_entropy, "alpha"),
    (crossent.reverse_cross_entropy, "A"),
    (crossent.poly1_cross_entropy, "epsilon"),
    (crossent.cross_entropy, "z_loss"),
]


@pytest.mark.parametrize("fn,name", INFINITE_HYPERPARAMETERS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_hyperparameters_are_rejected_not_turned_into_nan(fn, name, value):
    with pytest.raises(ValueError, match=rf"`{name}`.*finite"):
        fn(X, T, **{name: value})


def test_registry_spec_with_overflowing_number_is_rejected():
    with pytest.raises(ValueError, match=r"`gamma`.*finite"):
        crossent.get_loss("focal(gamma=1e999)")


def test_unbounded_range_is_printed_open():
    with pytest.raises(ValueError, match=r"`gamma` in \[0, inf\)"):
        crossent.focal_loss(X, T, gamma=-1.0)


@pytest.mark.parametrize(
    "fn",
    [
        crossent.reverse_cross_entropy,
        crossent.symmetric_cross_entropy,
        crossent.active_passive_loss,
    ],
)
def test_loss_reading_log_of_target_rejects_negative_probabilities(fn):
    p = torch.softmax(torch.randn(4, 5), 1)
    p[1, 2] = -1e-9
    with pytest.raises(ValueError, match=r"`target`.*>= 0"):
        fn(X, p)


def test_compiled_loss_checks_class_indices_with_a_device_assert():
    """While torch.compile traces, the host-side checks (a sync, a graph break) step aside and
    an out-of-range index fails at run time through ``torch._assert_async``."""
    compiled = torch.compile(crossent.cross_entropy, backend="aot_eager")
    x = torch.randn(4, 5)
    torch.testing.assert_close(compiled(x, T), crossent.cross_entropy(x, T))
    with pytest.raises(RuntimeError, match="out of range"):
        compiled(x, torch.tensor([0, 1, 7, 3]))
    assert crossent.config.validate_args()  # eager calls still validate
