import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from crossent.calibration import (
    adaptive_calibration_error,
    brier_score,
    calibration_bins,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from crossent.calibration import binning as binning_module
from crossent.core import config
from tests.calibration import reference as ref


def _multiclass(n=3000, k=7, scale=2.0, temperature=1.8, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, k, generator=gen, dtype=torch.float64)
    labels = torch.distributions.Categorical(logits=z).sample()
    probs = torch.softmax(temperature * z, dim=1).to(dtype)
    return probs, labels


def _binary(n=3000, dtype=torch.float32, seed=1):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, generator=gen, dtype=torch.float64)
    labels = (torch.rand(n, generator=gen, dtype=torch.float64) < probs**1.5).long()
    return probs.to(dtype), labels


def _off_edges(probs, labels, n_bins):
    """Drop rows whose confidence is on (or within float32 rounding of) a bin edge or at 1.0,
    where torchmetrics' [lo, hi) bins and its extra bin for 1.0 differ from (lo, hi]."""
    conf = probs if probs.dim() == 1 else probs.max(dim=1).values
    scaled = conf.double() * n_bins
    keep = (scaled - scaled.round()).abs() > 1e-5
    return probs[keep], labels[keep]


# --- torchmetrics: same numbers where both conventions agree --------------------------------


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_multiclass_matches_torchmetrics(norm, n_bins):
    probs, labels = _off_edges(*_multiclass(), n_bins)
    ours = expected_calibration_error(probs, labels, n_bins=n_bins, norm=norm)
    theirs = multiclass_calibration_error(probs, labels, probs.shape[1], n_bins=n_bins, norm=norm)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_binary_matches_torchmetrics(norm):
    probs, labels = _off_edges(*_binary(), 15)
    ours = expected_calibration_error(probs, labels, norm=norm)
    theirs = binary_calibration_error(probs, labels, n_bins=15, norm=norm)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_guo_convention_on_hand_made_case():
    # confidences [1, 1, .95, .95], correctness [1, 0, 1, 1], 10 bins: one bin (0.9, 1.0]
    # with accuracy 3/4 and mean confidence 0.975, so ECE = MCE = 0.225.
    probs = torch.tensor([1.0, 1.0, 0.95, 0.95], dtype=torch.float64)
    labels = torch.tensor([1, 0, 1, 1])
    assert expected_calibration_error(probs, labels, n_bins=10).item() == pytest.approx(0.225)
    assert maximum_calibration_error(probs, labels, n_bins=10).item() == pytest.approx(0.225)
    # the same case as (N, 2) top-label predictions
    rows = torch.stack([1 - probs, probs], dim=1)
    ece = expected_calibration_error(rows, labels, n_bins=10)
    assert ece.item() == pytest.approx(0.225)


def test_torchmetrics_difference_documented_example():
    # docs/calibration.md: torchmetrics bins [lo, hi) and puts 1.0 in an extra bin, giving
    # ECE = 0.5 * 0.05 + 0.5 * 0.5 = 0.275 and MCE = 0.5 on the case above.
    probs = torch.tensor([1.0, 1.0, 0.95, 0.95])
    labels = torch.tensor([1, 0, 1, 1])
    tm_ece = binary_calibration_error(probs, labels, n_bins=10, norm="l1")
    tm_mce = binary_calibration_error(probs, labels, n_bins=10, norm="max")
    assert tm_ece.item() == pytest.approx(0.275)
    assert tm_mce.item() == pytest.approx(0.5)
    # and a confidence exactly on an inner edge: 0.3 is in (0.2, 0.3] here, [0.3, 0.4) there
    probs = torch.tensor([0.3, 0.3, 0.35], dtype=torch.float64)
    bins = calibration_bins(probs, torch.tensor([0, 1, 1]), n_bins=10)
    assert bins.counts.tolist() == [0, 0, 2, 1, 0, 0, 0, 0, 0, 0]


# --- scikit-learn: calibration_curve bins, brier_score_loss, log_loss -----------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_bins_match_sklearn_calibration_curve(dtype):
    probs, labels = _binary(n=2000, dtype=dtype)
    # put some confidences exactly on edges and at 0 and 1: (lo, hi] as in scikit-learn
    probs[:8] = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.7, 0.9, 1.0, 1.0], dtype=dtype)
    prob_true, prob_pred = calibration_curve(labels.numpy(), probs.double().numpy(), n_bins=10)
    bins = calibration_bins(probs, labels, n_bins=10)
    filled = bins.counts > 0
    np.testing.assert_allclose(bins.accuracy[filled].numpy(), prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bins.confidence[filled].numpy(), prob_pred, rtol=0, atol=1e-12)
    assert int(bins.counts.sum()) == 2000
    np.testing.assert_array_equal(bins.edges.numpy(), np.linspace(0, 1, 11))


def test_quantile_bins_match_sklearn_calibration_curve():
    # with distinct confidences and N divisible by n_bins, equal-count bins are sklearn's
    probs, labels = _binary(n=1000, dtype=torch.float64)
    prob_true, prob_pred = calibration_curve(
        labels.numpy(), probs.numpy(), n_bins=8, strategy="quantile"
    )
    bins = calibration_bins(probs, labels, n_bins=8, binning="quantile")
    assert bins.counts.tolist() == [125] * 8
    np.testing.assert_allclose(bins.accuracy.numpy(), prob_true, atol=1e-12)
    np.testing.assert_allclose(bins.confidence.numpy(), prob_pred, atol=1e-12)


def test_brier_binary_equals_sklearn_and_is_half_the_two_column_value():
    probs, labels = _binary(dtype=torch.float64)
    ours = brier_score(probs, labels)
    assert ours.item() == pytest.approx(brier_score_loss(labels.numpy(), probs.numpy()), abs=1e-14)
    two_columns = brier_score(torch.stack([1 - probs, probs], dim=1), labels)
    assert two_columns.item() == pytest.approx(2 * ours.item(), abs=1e-14)


def test_brier_multiclass_formula():
    probs, labels = _multiclass(dtype=torch.float64)
    assert brier_score(probs, labels).item() == pytest.approx(ref.brier(probs, labels), abs=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_brier_of_confident_predictions_keeps_its_small_value(dtype):
    # sum_k p_k^2 - 2 p_y + 1 cancelled to 0 near p_y = 1 (81% low at 0.99999 in float32)
    eps = 1e-5 if dtype == torch.float32 else 1e-9
    probs = torch.tensor([[1 - eps, eps]] * 4, dtype=dtype)
    labels = torch.zeros(4, dtype=torch.long)
    expected = ((probs.double() - torch.tensor([1.0, 0.0], dtype=torch.float64)) ** 2).sum(1)
    ours = brier_score(probs, labels).item()
    assert ours == pytest.approx(expected.mean().item(), rel=1e-6)
    binary = brier_score(probs[:, 1], labels).item()  # p of class 1, the true class 0
    assert ours == pytest.approx(2 * binary, rel=1e-6)


def test_logits_are_binned_as_their_softmax():
    # exp(z - lse) can differ from torch.softmax by an ulp: a confidence of k/B changed bins
    z = torch.zeros(8, 10)
    y = torch.arange(8) % 10
    from_logits = calibration_bins(z, y, n_bins=10, from_logits=True).counts
    assert torch.equal(from_logits, calibration_bins(torch.softmax(z, 1), y, n_bins=10).counts)


def test_nll_matches_sklearn_and_cross_entropy():
    probs, labels = _multiclass(dtype=torch.float64)
    expected = log_loss(labels.numpy(), probs.numpy(), labels=list(range(probs.shape[1])))
    assert negative_log_likelihood(probs, labels).item() == pytest.approx(expected, rel=1e-12)
    logits = 3 * torch.randn(500, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (500,))
    nll = negative_log_likelihood(logits, y, from_logits=True)
    torch.testing.assert_close(nll, torch.nn.functional.cross_entropy(logits, y))
    probs, labels = _binary(dtype=torch.float64)
    assert negative_log_likelihood(probs, labels).item() == pytest.approx(
        log_loss(labels.numpy(), probs.numpy()), rel=1e-12
    )


def test_nll_clipping_is_documented_value():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    labels = torch.tensor([1, 1])
    eps = torch.finfo(torch.float32).eps
    expected = -np.log(eps) / 2  # the confident mistake costs -log(eps), the hit costs 0
    assert negative_log_likelihood(probs, labels).item() == pytest.approx(expected, rel=1e-6)
    logits = torch.tensor([[0.0, -200.0]], dtype=torch.float64)
    nll = negative_log_likelihood(logits, torch.tensor([1]), from_logits=True)
    assert nll.item() == pytest.approx(200.0)  # exact from logits, no clipping


# --- formulas written in the tests: equal mass, classwise, debiased -------------------------


@pytest.mark.parametrize("n", [1000, 997])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_quantile_binning_matches_equal_mass_formula(n, norm):
    probs, labels = _multiclass(n=n, dtype=torch.float64)
    ours = expected_calibration_error(probs, labels, n_bins=15, binning="quantile", norm=norm)
    expected = ref.ece(probs.numpy(), labels.numpy(), 15, norm, "quantile")
    assert ours.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("classwise", [False, True])
def test_adaptive_calibration_error_formula(classwise):
    probs, labels = _multiclass(n=1200, dtype=torch.float64)
    ours = adaptive_calibration_error(probs, labels, n_bins=10, classwise=classwise)
    if classwise:
        expected = ref.classwise_ece(probs.numpy(), labels.numpy(), 10, "l1", "quantile")
    else:
        expected = ref.ece(probs.numpy(), labels.numpy(), 10, "l1", "quantile")
    assert ours.item() == pytest.approx(expected, abs=1e-12)


def test_ace_differs_from_ece_on_skewed_confidences():
    probs, labels = _multiclass(n=2000, scale=3.0, temperature=1.0, dtype=torch.float64)
    ace = adaptive_calibration_error(probs, labels, n_bins=15)
    ece = expected_calibration_error(probs, labels, n_bins=15)
    assert ace.item() != pytest.approx(ece.item(), abs=1e-6)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_classwise_matches_formula(binning, norm):
    probs, labels = _multiclass(n=1500, k=5, dtype=torch.float64)
    ours = classwise_calibration_error(probs, labels, n_bins=12, binning=binning, norm=norm)
    expected = ref.classwise_ece(probs.numpy(), labels.numpy(), 12, norm, binning)
    assert ours.item() == pytest.approx(expected, abs=1e-12)
    same = expected_calibration_error(
        probs, labels, n_bins=12, binning=binning, norm=norm, mode="classwise"
    )
    assert same.item() == ours.item()


def test_classwise_binary_averages_both_classes():
    probs, labels = _binary(n=800, dtype=torch.float64)
    ours = classwise_calibration_error(probs, labels, n_bins=10)
    expected = ref.classwise_ece(probs.numpy(), labels.numpy(), 10)
    assert ours.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("mode", ["top_label", "classwise"])
@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_debiased_l2_matches_kumar_formula(mode, binning):
    probs, labels = _multiclass(n=600, k=4, temperature=1.2, dtype=torch.float64)
    ours = expected_calibration_error(
        probs, labels, n_bins=10, norm="l2", debiased=True, mode=mode, binning=binning
    )
    reference = ref.classwise_ece if mode == "classwise" else ref.ece
    expected = reference(probs.numpy(), labels.numpy(), 10, "l2", binning, debiased=True)
    assert ours.item() == pytest.approx(expected, abs=1e-12)
    plugin = expected_calibration_error(
        probs, labels, n_bins=10, norm="l2", mode=mode, binning=binning
    )
    assert ours.item() < plugin.item()  # the plug-in estimate is biased upwards


def test_debiased_is_near_zero_for_calibrated_predictions():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(20000, generator=gen, dtype=torch.float64)
    labels = (torch.rand(20000, generator=gen, dtype=torch.float64) < probs).long()
    plugin = expected_calibration_error(probs, labels, norm="l2").item()
    debiased = expected_calibration_error(probs, labels, norm="l2", debiased=True).item()
    assert debiased < plugin / 2


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_uniform_top_label_matches_loop_reference(norm):
    probs, labels = _multiclass(n=2500, dtype=torch.float64)
    ours = expected_calibration_error(probs, labels, n_bins=13, norm=norm)
    expected = ref.ece(probs.numpy(), labels.numpy(), 13, norm)
    assert ours.item() == pytest.approx(expected, abs=1e-12)


# --- inputs: logits, dtypes, ties, chunking, validation switch ------------------------------


def test_from_logits_equals_probabilities():
    logits = 2 * torch.randn(700, 6, dtype=torch.float64)
    labels = torch.randint(0, 6, (700,))
    probs = torch.softmax(logits, dim=1)
    for fn in (expected_calibration_error, adaptive_calibration_error, brier_score):
        torch.testing.assert_close(fn(logits, labels, from_logits=True), fn(probs, labels))
    binary_logits = torch.randn(300, dtype=torch.float64)
    y = torch.randint(0, 2, (300,))
    torch.testing.assert_close(
        expected_calibration_error(binary_logits, y, from_logits=True),
        expected_calibration_error(torch.sigmoid(binary_logits), y),
    )


def test_result_dtypes_and_half_inputs():
    probs, labels = _multiclass(dtype=torch.float64)
    assert expected_calibration_error(probs, labels).dtype == torch.float64
    half = expected_calibration_error(probs.half(), labels)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(expected_calibration_error(probs, labels).item(), abs=2e-3)
    assert brier_score(probs.bfloat16(), labels).dtype == torch.float32


def test_ties_count_the_first_maximum_as_prediction():
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    ece_first = expected_calibration_error(probs, torch.tensor([0, 0]), n_bins=10)
    ece_second = expected_calibration_error(probs, torch.tensor([1, 1]), n_bins=10)
    assert ece_first.item() == pytest.approx(0.5)  # correct, confidence 0.5
    assert ece_second.item() == pytest.approx(0.5)  # wrong, confidence 0.5
    acc_bins = calibration_bins(probs, torch.tensor([0, 1]), n_bins=10)
    assert acc_bins.accuracy[4].item() == 0.5


def test_chunking_does_not_change_results(monkeypatch):
    probs, labels = _multiclass(n=1000, dtype=torch.float64)
    whole = [
        expected_calibration_error(probs, labels, norm=n, mode=m)
        for n in ("l1", "max")
        for m in ("top_label", "classwise")
    ]
    whole.append(adaptive_calibration_error(probs, labels, classwise=True))
    whole.append(brier_score(probs, labels))
    monkeypatch.setattr(binning_module, "CHUNK_ROWS", 13)  # uneven chunks of 13 rows
    monkeypatch.setattr(binning_module, "CLASSWISE_ELEMENTS", 70)  # 10 rows per chunk
    chunked = [
        expected_calibration_error(probs, labels, norm=n, mode=m)
        for n in ("l1", "max")
        for m in ("top_label", "classwise")
    ]
    chunked.append(adaptive_calibration_error(probs, labels, classwise=True))
    chunked.append(brier_score(probs, labels))
    for a, b in zip(whole, chunked, strict=True):
        assert abs(a.item() - b.item()) < 1e-12


def test_validate_args_false_skips_content_checks():
    probs = torch.tensor([[0.7, 0.7], [0.2, 0.2]])  # rows do not sum to 1
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error(probs, labels)
    value = expected_calibration_error(probs, labels, validate_args=False, n_bins=10)
    assert value.item() == pytest.approx((0.3 + 0.2) / 2)
    config.set_validation(False)
    assert expected_calibration_error(probs, labels, n_bins=10).item() == pytest.approx(0.25)


def test_bins_arrays_are_consistent():
    probs, labels = _multiclass(n=500)
    bins = calibration_bins(probs, labels, n_bins=10)
    assert bins.edges.shape == (11,)
    assert bins.counts.dtype == torch.int64 and int(bins.counts.sum()) == 500
    filled = bins.counts > 0
    ece = float((bins.counts[filled] * (bins.accuracy - bins.confidence)[filled].abs()).sum())
    assert ece / 500 == pytest.approx(expected_calibration_error(probs, labels, n_bins=10).item())
    assert torch.isnan(bins.accuracy[~filled]).all()
    quantile = calibration_bins(probs, labels, n_bins=10, binning="quantile")
    assert quantile.counts.tolist() == [50] * 10
    assert bool((quantile.edges[1:] >= quantile.edges[:-1]).all())


def test_quantile_with_more_bins_than_rows():
    probs = torch.tensor([0.6, 0.9, 0.8], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0])
    bins = calibration_bins(probs, labels, n_bins=5, binning="quantile")
    assert bins.counts.tolist() == [1, 1, 1, 0, 0]
    ace = adaptive_calibration_error(probs, labels, n_bins=5)
    assert ace.item() == pytest.approx((0.4 + 0.8 + 0.1) / 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("n_bins", [3, 10, 15, 7])
def test_values_within_ulps_of_edges_are_binned_as_sklearn(dtype, n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    near = torch.tensor(edges, dtype=dtype)
    values = [near]
    below, above = near.clone(), near.clone()
    for _ in range(3):  # one, two and three ulps below and above every edge
        below = torch.nextafter(below, near.new_tensor(0.0))
        above = torch.nextafter(above, near.new_tensor(1.0))
        values += [below.clone(), above.clone()]
    probs = torch.cat(values).clamp(0, 1)
    labels = torch.zeros(probs.shape[0], dtype=torch.long)
    bins = calibration_bins(probs, labels, n_bins=n_bins)
    expected_ids = np.searchsorted(edges[1:-1], probs.double().numpy())  # (lo, hi], float64
    assert bins.counts.tolist() == np.bincount(expected_ids, minlength=n_bins).tolist()


def test_bins_give_every_norm_from_one_pass():
    probs, labels = _multiclass(n=2000, dtype=torch.float64)
    bins = calibration_bins(probs, labels, n_bins=12)
    for norm in ("l1", "l2", "max"):
        expected = expected_calibration_error(probs, labels, n_bins=12, norm=norm)
        assert abs(bins.calibration_error(norm).item() - expected.item()) < 1e-12
    with pytest.raises(ValueError, match="`norm` to be one of"):
        bins.calibration_error("l3")


@pytest.mark.parametrize("n_bins", [98, 196, 392])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_exact_dyadic_edges_are_binned_as_float64_and_sklearn(dtype, n_bins):
    # numpy.linspace(0, 1, 99)[49] is 0.49999999999999994, one ulp below 1/2: scikit-learn
    # (and crossent on float64) put a confidence of exactly 0.5 in the bin above that edge.
    # The same 0.5 given in float32 or half precision must land in the same bin.
    edges = np.linspace(0, 1, n_bins + 1)
    k = np.arange(n_bins + 1)
    exact = k / n_bins
    below = (edges < exact) & (exact == exact.astype(np.float16))  # dyadic k/B, edge below
    assert below.any()
    probs = torch.tensor(exact[below], dtype=dtype)
    labels = torch.zeros(probs.shape[0], dtype=torch.long)
    expected_ids = np.searchsorted(edges[1:-1], probs.double().numpy())
    expected = np.bincount(expected_ids, minlength=n_bins).tolist()
    assert calibration_bins(probs, labels, n_bins=n_bins).counts.tolist() == expected
    as_float64 = calibration_bins(probs.double(), labels, n_bins=n_bins).counts.tolist()
    assert as_float64 == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_nll_clips_at_the_input_dtype_epsilon(dtype):
    # a confident mistake costs -log(eps) of the input's dtype (6.93 in float16), as
    # documented and as scikit-learn's log_loss, which clips at np.finfo(y_pred.dtype).eps
    eps = torch.finfo(dtype).eps
    expected = -np.log(eps)
    rows = torch.tensor([[1.0, 0.0]], dtype=dtype)
    assert negative_log_likelihood(rows, torch.tensor([1])).item() == pytest.approx(expected)
    binary = torch.tensor([0.0], dtype=dtype)
    assert negative_log_likelihood(binary, torch.tensor([1])).item() == pytest.approx(expected)
    if dtype == torch.float16:
        probs = torch.tensor([0.0, 1.0, 0.3], dtype=dtype)
        labels = np.array([1, 0, 1])
        theirs = log_loss(labels, probs.numpy())
        assert negative_log_likelihood(probs, torch.tensor(labels)).item() == pytest.approx(
            theirs, rel=1e-3
        )
