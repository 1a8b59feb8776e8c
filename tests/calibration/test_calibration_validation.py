import math

import pytest
import torch

from crossent import ProbabilityInputWarning
from crossent.calibration import (
    CalibrationMeter,
    adaptive_calibration_error,
    brier_score,
    calibration_bins,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from crossent.core import config

P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
Y = torch.tensor([0, 1, 2])
B = torch.tensor([0.2, 0.9, 0.6])
YB = torch.tensor([0, 1, 1])

ALL = [
    expected_calibration_error,
    maximum_calibration_error,
    adaptive_calibration_error,
    classwise_calibration_error,
    brier_score,
    negative_log_likelihood,
    calibration_bins,
]
BINNED = [
    expected_calibration_error,
    maximum_calibration_error,
    adaptive_calibration_error,
    classwise_calibration_error,
    calibration_bins,
]


def _with(row, value, probs=P):
    probs = probs.clone()
    probs[row] = value
    return probs


# (probs, labels, kwargs, exception, message regex)
CASES = [
    (_with(1, torch.tensor([math.nan, 0.5, 0.5])), Y, {}, ValueError, r"`probs` to be finite.*nan"),
    (_with(1, torch.tensor([math.inf, 0.0, 0.0])), Y, {}, ValueError, r"`probs` to be finite.*inf"),
    (_with(0, torch.tensor([1.2, -0.1, -0.1])), Y, {}, ValueError, r"`probs`.*\[0, 1\].*-0\.1"),
    (_with(0, torch.tensor([0.5, 0.3, 0.1])), Y, {}, ValueError, r"`probs` rows to sum to 1.*0\.9"),
    (P * 3, Y, {}, ValueError, r"`probs`.*\[0, 1\].*but got 2\.4"),
    (P, torch.tensor([0, 1, 3]), {}, ValueError, r"`labels` to be class indices in \[0, 2\].*3"),
    (P, torch.tensor([0, -1, 2]), {}, ValueError, r"`labels`.*-1"),
    (P, torch.tensor([0, 1]), {}, ValueError, r"`labels` to have shape \(3,\).*shape \(2,\)"),
    (P, Y.float(), {}, TypeError, r"`labels` to have an integer dtype"),
    (P.long(), Y, {}, TypeError, r"`probs` to have a floating dtype"),
    (P.unsqueeze(0), Y, {}, ValueError, r"`probs` to have shape \(N, K\) or \(N,\)"),
    (P[:, :1], Y, {}, ValueError, r"at least 2 columns"),
    (P[:0], Y[:0], {}, ValueError, r"at least one row"),
    (P.tolist(), Y, {}, TypeError, r"`probs` to be a torch.Tensor"),
    (B, torch.tensor([0, 2, 1]), {}, ValueError, r"`labels`.*\[0, 1\].*2"),
    (torch.tensor([0.2, 1.5, 0.3]), YB, {}, ValueError, r"\[0, 1\].*1\.5"),
    (P, Y, {"from_logits": 1}, TypeError, r"`from_logits` to be a bool"),
    (P, Y, {"validate_args": "no"}, TypeError, r"`validate_args` to be a bool"),
]
LOGIT_CASES = [
    (torch.tensor([[0.0, math.nan], [1.0, 2.0]]), torch.tensor([0, 1]), r"finite"),
    (torch.tensor([[-math.inf, -math.inf], [1.0, 2.0]]), torch.tensor([0, 1]), r"only -inf"),
    (torch.tensor([math.nan, 1.0]), torch.tensor([0, 1]), r"NaN"),
]
BIN_CASES = [
    ({"n_bins": 0}, ValueError, r"Expected `n_bins` >= 1, but got 0"),
    ({"n_bins": -3}, ValueError, r"Expected `n_bins` >= 1, but got -3"),
    ({"n_bins": 2.5}, TypeError, r"`n_bins` to be an int"),
    ({"n_bins": True}, TypeError, r"`n_bins` to be an int"),
    # 10**9 bins asked for 24 GB (the process was killed) before the bound
    ({"n_bins": 10**9}, ValueError, r"Expected `n_bins` <= 10,000 .*but got 1000000000"),
]


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize(("probs", "labels", "kwargs", "error", "message"), CASES)
def test_every_function_rejects_bad_input(fn, probs, labels, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(probs, labels, **kwargs)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize(("logits", "labels", "message"), LOGIT_CASES)
def test_bad_logits(fn, logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fn(logits, labels, from_logits=True)


@pytest.mark.parametrize("fn", BINNED)
@pytest.mark.parametrize(("kwargs", "error", "message"), BIN_CASES)
def test_n_bins_is_checked(fn, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(P, Y, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "l3"}, r"Expected `norm` to be one of 'l1', 'l2', 'max', but got 'l3'"),
        ({"binning": "equal"}, r"`binning` to be one of 'uniform', 'quantile'"),
        ({"mode": "marginal"}, r"`mode` to be one of 'top_label', 'classwise'"),
        ({"debiased": True}, r"`norm` to be 'l2' when `debiased=True`.*'l1'"),
        ({"debiased": True, "norm": "max"}, r"`norm` to be 'l2'.*'max'"),
    ],
)
def test_option_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(P, Y, **kwargs)


@pytest.mark.parametrize("fn", ALL)
def test_content_checks_can_be_skipped(fn):
    unnormalised = P * 1.1  # values in [0, 1], rows summing to 1.1
    with pytest.raises(ValueError, match="sum to 1"):
        fn(unnormalised, Y)
    fn(unnormalised, Y, validate_args=False)  # no error
    config.set_validation(False)
    fn(unnormalised, Y)  # the global switch too


def test_shape_checks_run_even_without_content_checks():
    with pytest.raises(ValueError, match="shape"):
        expected_calibration_error(P, Y[:2], validate_args=False)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(P, Y, n_bins=0, validate_args=False)


def test_row_sum_tolerance_is_as_documented():
    ok = _with(0, torch.tensor([0.7, 0.2, 0.1009], dtype=torch.float64), P.double())
    expected_calibration_error(ok, Y)  # 9e-4 off: accepted
    bad = _with(0, torch.tensor([0.7, 0.2, 0.1011], dtype=torch.float64), P.double())
    with pytest.raises(ValueError, match=r"within 0\.001"):
        expected_calibration_error(bad, Y)


def test_probability_warning_when_from_logits_gets_probabilities():
    with pytest.warns(ProbabilityInputWarning, match="look like probabilities"):
        expected_calibration_error(P, Y, from_logits=True)
    config.set_probability_warning(False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected_calibration_error(P, Y, from_logits=True)


def test_n_bins_bound_is_inclusive():
    bins = calibration_bins(P, Y, n_bins=10_000)
    assert bins.counts.shape == (10_000,) and int(bins.counts.sum()) == 3
    with pytest.raises(ValueError, match=r"`n_bins` <= 10,000"):
        calibration_bins(P, Y, n_bins=10_001)


def test_meter_checks():
    with pytest.raises(ValueError, match=r"Expected `n_bins` >= 1, but got 0"):
        CalibrationMeter(n_bins=0)
    with pytest.raises(ValueError, match=r"Expected `n_bins` <= 10,000 .*but got 1000000000"):
        CalibrationMeter(n_bins=10**9)
    with pytest.raises(ValueError, match=r"`num_classes` >= 2"):
        CalibrationMeter(num_classes=1)
    with pytest.raises(TypeError, match=r"`num_classes` to be an int"):
        CalibrationMeter(num_classes=2.0)
    meter = CalibrationMeter(num_classes=3)
    with pytest.raises(ValueError, match=r"`probs` to have 3 classes, but got 2"):
        meter.update(torch.tensor([[0.5, 0.5]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"rows to sum to 1"):
        meter.update(P * 1.1, Y)
    CalibrationMeter(validate_args=False).update(P * 1.1, Y)
