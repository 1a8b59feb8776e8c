import pytest
import torch

pytest.importorskip("torchmetrics", reason="the torchmetrics integration needs torchmetrics")

from crossent.calibration import (  # noqa: E402
    adaptive_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
)
from crossent.integrations.torchmetrics import (  # noqa: E402
    AdaptiveCalibrationError,
    CalibrationError,
    ClasswiseCalibrationError,
)


def _data(n=1000, k=5, seed=0, binary=False):
    gen = torch.Generator().manual_seed(seed)
    if binary:
        z = 2 * torch.randn(n, generator=gen, dtype=torch.float64)
        return z, (torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(z)).long()
    z = 3 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z / 3, dim=1), 1, generator=gen).squeeze(1)
    return z, labels


def _stream(metric, logits, labels, size=137):
    for start in range(0, logits.shape[0], size):
        metric.update(logits[start : start + size], labels[start : start + size])
    return metric.compute()


CASES = [
    (lambda: CalibrationError(n_bins=12, from_logits=True), expected_calibration_error, {}),
    (
        lambda: CalibrationError(n_bins=12, norm="l2", debiased=True, from_logits=True),
        expected_calibration_error,
        {"norm": "l2", "debiased": True},
    ),
    (
        lambda: CalibrationError(n_bins=12, norm="max", from_logits=True),
        expected_calibration_error,
        {"norm": "max"},
    ),
    (
        lambda: ClasswiseCalibrationError(5, n_bins=12, from_logits=True),
        classwise_calibration_error,
        {},
    ),
    (lambda: AdaptiveCalibrationError(n_bins=12, from_logits=True), adaptive_calibration_error, {}),
    (
        lambda: AdaptiveCalibrationError(n_bins=12, classwise=True, from_logits=True),
        adaptive_calibration_error,
        {"classwise": True},
    ),
]


@pytest.mark.parametrize(("make", "function", "kwargs"), CASES)
def test_streamed_metric_equals_the_function_on_the_concatenation(make, function, kwargs):
    logits, labels = _data()
    expected = function(logits, labels, n_bins=12, from_logits=True, **kwargs)
    result = _stream(make(), logits, labels)
    assert result.dtype == torch.float64 and result.shape == ()
    assert abs(result.item() - expected.item()) <= 1e-12


def test_binary_inputs_and_probabilities():
    logits, labels = _data(binary=True)
    probs = torch.sigmoid(logits)
    for metric, expected in (
        (CalibrationError(n_bins=10), expected_calibration_error(probs, labels, n_bins=10)),
        (
            ClasswiseCalibrationError(2, n_bins=10),
            classwise_calibration_error(probs, labels, n_bins=10),
        ),
        (AdaptiveCalibrationError(n_bins=10), adaptive_calibration_error(probs, labels, n_bins=10)),
    ):
        assert abs(_stream(metric, probs, labels).item() - expected.item()) <= 1e-12


def test_state_is_o_bins_and_flags():
    metric = ClasswiseCalibrationError(7, n_bins=20, from_logits=True)
    assert metric.stats.shape == (3, 7, 20) and metric.stats.dtype == torch.float64
    top = CalibrationError(n_bins=20)
    assert top.stats.shape == (3, 1, 20)
    logits, labels = _data(n=5000, k=7)
    metric.update(logits, labels)
    assert metric.stats.shape == (3, 7, 20)  # independent of N
    assert int(metric.stats[0].sum()) == 5000 * 7
    for cls in (CalibrationError, ClasswiseCalibrationError, AdaptiveCalibrationError):
        assert cls.full_state_update is False
        assert cls.is_differentiable is False
        assert cls.higher_is_better is False
    assert top._reductions["stats"].__name__ == "dim_zero_sum"


def test_forward_gives_the_batch_value_and_accumulates():
    logits, labels = _data(n=400)
    metric = CalibrationError(from_logits=True)
    first = metric(logits[:200], labels[:200])
    second = metric(logits[200:], labels[200:])
    assert first.item() == pytest.approx(
        expected_calibration_error(logits[:200], labels[:200], from_logits=True).item(), abs=1e-12
    )
    assert second.item() == pytest.approx(
        expected_calibration_error(logits[200:], labels[200:], from_logits=True).item(), abs=1e-12
    )
    total = expected_calibration_error(logits, labels, from_logits=True).item()
    assert metric.compute().item() == pytest.approx(total, abs=1e-12)
    metric.reset()
    assert int(metric.stats.sum()) == 0


def test_bad_input_and_mixed_kinds():
    logits, labels = _data(n=50)
    with pytest.raises(ValueError, match=r"`n_bins` <= 10,000"):
        CalibrationError(n_bins=10**9)
    with pytest.raises(TypeError, match=r"`num_classes` to be an int, but got NoneType"):
        ClasswiseCalibrationError(None)
    with pytest.raises(ValueError, match=r"`norm` to be 'l2' when `debiased=True`"):
        CalibrationError(debiased=True)
    with pytest.raises(ValueError, match=r"`probs` to hold probabilities .*from_logits=True"):
        CalibrationError().update(logits, labels)  # logits without from_logits=True
    metric = CalibrationError(from_logits=True)
    metric.update(logits, labels)
    with pytest.raises(ValueError, match=r"\(N, K\) top-label predictions of 5 classes like"):
        metric.update(logits[:, 0], (labels > 2).long())
    with pytest.raises(ValueError, match=r"`probs` to have 5 classes, but got 3"):
        ClasswiseCalibrationError(5, from_logits=True).update(logits[:, :3], labels % 3)
    metric.reset()  # forgets the kind too
    metric.update(logits[:, 0], (labels > 2).long())
