import warnings

import numpy as np
import pytest
import torch
from sklearn.calibration import _sigmoid_calibration

from crossent import ProbabilityInputWarning, config
from crossent.calibration import (
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    expected_calibration_error,
    negative_log_likelihood,
)


def _overconfident(seed, n=20000, k=10):
    """Labels sampled from softmax(z); the model reports T * z with a random T in [1.5, 4]."""
    gen = torch.Generator().manual_seed(seed)
    z = 1.5 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    true_t = 1.5 + 2.5 * torch.rand((), generator=gen, dtype=torch.float64).item()
    return true_t * z, labels, true_t


def _ece(logits, labels):
    return expected_calibration_error(logits, labels, from_logits=True).item()


def _nll(logits, labels):
    return negative_log_likelihood(logits, labels, from_logits=True).item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_scaling_recovers_the_temperature(seed):
    logits, labels, true_t = _overconfident(seed)
    scaler = TemperatureScaling()
    assert scaler.temperature == 1.0  # starts from T = 1
    scaler.fit(logits, labels)
    assert abs(scaler.temperature - true_t) / true_t < 0.05
    calibrated = scaler(logits)
    assert calibrated.dtype == logits.dtype and calibrated.shape == logits.shape
    torch.testing.assert_close(calibrated, logits / scaler.temperature)
    assert torch.equal(calibrated.argmax(dim=1), logits.argmax(dim=1))
    assert _ece(calibrated, labels) <= _ece(logits, labels) / 2
    assert _nll(calibrated, labels) <= _nll(logits, labels)


def test_temperature_minimises_the_nll():
    logits, labels, _ = _overconfident(5, n=3000, k=4)
    scaler = TemperatureScaling().fit(logits, labels)
    best = _nll(scaler(logits), labels)
    for factor in (0.97, 1.03):
        assert best <= _nll(logits / (scaler.temperature * factor), labels)


def test_temperature_scaling_binary_logits_and_float32():
    gen = torch.Generator().manual_seed(7)
    z = 2 * torch.randn(20000, generator=gen)
    labels = (torch.rand(20000, generator=gen) < torch.sigmoid(z)).long()
    scaler = TemperatureScaling().fit(3 * z, labels)
    assert abs(scaler.temperature - 3) / 3 < 0.05
    assert scaler(3 * z).dtype == torch.float32


def test_temperature_scaling_allows_masked_classes():
    logits, labels, true_t = _overconfident(3, n=5000, k=5)
    logits = torch.cat([logits, torch.full((5000, 1), -torch.inf, dtype=logits.dtype)], dim=1)
    scaler = TemperatureScaling().fit(logits, labels)
    assert abs(scaler.temperature - true_t) / true_t < 0.1


def test_temperature_scaling_state_dict_round_trip():
    logits, labels, _ = _overconfident(4, n=1000, k=3)
    scaler = TemperatureScaling().fit(logits, labels)
    other = TemperatureScaling()
    other.load_state_dict(scaler.state_dict())
    assert other.temperature == pytest.approx(scaler.temperature, rel=1e-12)


@pytest.mark.parametrize("cls", [TemperatureScaling, VectorScaling, MatrixScaling])
def test_too_few_rows_or_one_class_raise(cls):
    logits = torch.randn(19, 3)
    with pytest.raises(ValueError, match=r"at least 20 rows.*19 rows"):
        cls().fit(logits, torch.arange(19) % 3)
    with pytest.raises(ValueError, match=r"two classes.*only class 2"):
        cls().fit(torch.randn(40, 3), torch.full((40,), 2))
    with pytest.raises(ValueError, match=r"`labels` to be class indices"):
        cls().fit(torch.randn(40, 3), torch.arange(40) % 4)
    with pytest.raises(ValueError, match=r"`logits` to be finite"):
        cls().fit(torch.full((40, 3), torch.nan), torch.arange(40) % 3)


def test_temperature_scaling_raises_when_the_optimiser_fails():
    # perfectly separated data: the NLL keeps falling as T -> 0 ...
    logits = torch.eye(3).repeat(10, 1) * 0.05
    labels = torch.arange(3).repeat(10)
    with pytest.raises(RuntimeError, match="bound"):
        TemperatureScaling().fit(logits, labels)
    # ... or rounds to exactly 0 over a whole range of T, which then is not identifiable
    with pytest.raises(RuntimeError, match="no strict minimum"):
        TemperatureScaling().fit(logits * 100, labels)
    # and a minimum beyond the search interval
    logits, labels, _ = _overconfident(0, n=500)
    with pytest.raises(RuntimeError, match="bound"):
        TemperatureScaling(bounds=(0.01, 0.5)).fit(logits, labels)


def test_temperature_argument_checks():
    with pytest.raises(ValueError, match=r"`temperature` in \(0, inf\)"):
        TemperatureScaling(0.0)
    with pytest.raises(ValueError, match=r"`bounds\[1\]`"):
        TemperatureScaling(bounds=(2.0, 1.0))
    with pytest.raises(TypeError, match="bounds"):
        TemperatureScaling(bounds=[0.1, 10.0])
    assert TemperatureScaling(2.0)(torch.ones(2)).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling])
def test_vector_and_matrix_scaling_calibrate(cls):
    logits, labels, _ = _overconfident(1, n=8000, k=5)
    scaler = cls().fit(logits, labels)
    calibrated = scaler(logits)
    assert calibrated.shape == logits.shape and calibrated.dtype == logits.dtype
    assert _ece(calibrated, labels) <= _ece(logits, labels) / 2
    assert _nll(calibrated, labels) <= _nll(logits, labels)
    # never worse than temperature scaling, a special case of both maps, on the fitting data
    temperature = TemperatureScaling().fit(logits, labels)
    assert _nll(calibrated, labels) <= _nll(temperature(logits), labels) + 1e-9
    assert scaler(logits.float()).dtype == torch.float32


def test_vector_scaling_fits_per_class_bias():
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(20000, 3, generator=gen, dtype=torch.float64)
    bias = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z + bias, dim=1), 1, generator=gen).squeeze(1)
    scaler = VectorScaling().fit(z, labels)
    centred = scaler.bias - scaler.bias.mean()  # softmax is shift-invariant
    torch.testing.assert_close(centred, bias, atol=0.06, rtol=0)
    torch.testing.assert_close(scaler.weight, torch.ones(3, dtype=torch.float64), atol=0.06, rtol=0)


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling, PlattScaling])
def test_unfitted_call_raises(cls):
    with pytest.raises(RuntimeError, match="not fitted"):
        cls()(torch.randn(4, 3))


def test_scalers_need_their_shapes():
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        VectorScaling().fit(torch.randn(30), torch.arange(30) % 2)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        PlattScaling().fit(torch.randn(30, 2), torch.arange(30) % 2)
    with pytest.raises(ValueError, match=r"`max_iter` >= 1"):
        MatrixScaling(max_iter=0)


def _binary_scores(seed, n=20000):
    gen = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.3
    labels = (torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(z)).long()
    return z, labels


def test_platt_scaling_matches_sklearn():
    z, labels = _binary_scores(2, n=3000)
    scores = 2.5 * z - 1.0
    scaler = PlattScaling().fit(scores, labels)
    a, b = _sigmoid_calibration(scores.numpy(), labels.numpy())  # p = 1 / (1 + exp(a s + b))
    assert scaler.weight.item() == pytest.approx(-a, rel=1e-4)
    assert scaler.bias.item() == pytest.approx(-b, rel=1e-4, abs=1e-5)


def test_platt_scaling_calibrates_overconfident_scores():
    z, labels = _binary_scores(3)
    scores = 3.0 * z
    scaler = PlattScaling().fit(scores, labels)
    calibrated = scaler(scores)
    assert scaler.weight.item() == pytest.approx(1 / 3, rel=0.05)
    assert _ece(calibrated, labels) <= _ece(scores, labels) / 2
    assert _nll(calibrated, labels) <= _nll(scores, labels)
    assert torch.equal(calibrated > 0, scores > scaler.bias.neg() / scaler.weight)


def test_platt_scaling_from_probabilities():
    z, labels = _binary_scores(4, n=5000)
    probs = torch.sigmoid(3.0 * z)
    from_probs = PlattScaling(from_probs=True).fit(probs, labels)
    from_logits = PlattScaling().fit(torch.logit(probs), labels)
    torch.testing.assert_close(from_probs(probs), from_logits(torch.logit(probs)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PlattScaling(from_probs=True).fit(probs * 2, labels)
    with pytest.raises(ValueError, match=r"`labels` to be class indices in \[0, 1\]"):
        PlattScaling().fit(z, labels * 2)


def test_platt_handles_separable_and_large_scores():
    scores = torch.cat([torch.linspace(-1000, -10, 30), torch.linspace(10, 1000, 30)])
    labels = (scores > 0).long()
    scaler = PlattScaling().fit(scores, labels)
    probs = torch.sigmoid(scaler(scores))
    assert np.isfinite(scaler.weight.item()) and scaler.weight.item() > 0
    # Platt's targets (31/32 and 1/32 here) keep the slope finite: p crosses 1/2 between
    assert bool((probs[labels == 1] > 0.5).all()) and bool((probs[labels == 0] < 0.5).all())
    assert bool((probs.diff() > 0).all())


def test_temperature_scaling_reports_an_optimiser_failure(monkeypatch):
    import scipy.optimize
    from scipy.optimize import OptimizeResult

    logits, labels, _ = _overconfident(0, n=200, k=3)
    failed = OptimizeResult(x=0.5, fun=1.0, success=False, message="Maximum number of iterations")
    monkeypatch.setattr(scipy.optimize, "minimize_scalar", lambda *args, **kwargs: failed)
    scaler = TemperatureScaling()
    with pytest.raises(RuntimeError, match="failed to converge: Maximum number of iterations"):
        scaler.fit(logits, labels)
    assert scaler.temperature == 1.0  # unchanged


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling])
def test_fitted_vector_and_matrix_scaling_check_the_number_of_classes(cls):
    z, y = torch.randn(60, 3, dtype=torch.float64), torch.arange(60) % 3
    scaler = cls().fit(z, y)
    name = cls.__name__
    message = rf"`logits` to have shape \(N, 3\) \(the 3 classes {name} was fitted on\)"
    with pytest.raises(ValueError, match=message + r", but got shape \(5, 4\)"):
        scaler(torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=message + r", but got shape \(5,\)"):
        scaler(torch.randn(5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"`logits` to be a torch.Tensor"):
        scaler(z.tolist())
    assert scaler(z[:5]).shape == (5, 3)


def test_fitted_platt_scaling_refuses_two_columns():
    z, labels = _binary_scores(6, n=200)
    scaler = PlattScaling().fit(z, labels)
    with pytest.raises(ValueError, match=r"`scores` to have shape \(N,\).*z\[:, 1\] - z\[:, 0\]"):
        scaler(torch.stack([-z, z], dim=1))
    assert scaler(z).shape == z.shape


def test_platt_from_probs_error_names_an_existing_option():
    z, labels = _binary_scores(4, n=200)
    with pytest.raises(ValueError, match=r"\[0, 1\]") as info:
        PlattScaling(from_probs=True).fit(z, labels)
    assert "from_logits" not in str(info.value)
    assert "without from_probs" in str(info.value)


@pytest.mark.parametrize("cls", [TemperatureScaling, VectorScaling, MatrixScaling])
def test_fit_on_probabilities_warns_like_the_metrics(cls):
    logits, labels, _ = _overconfident(0, n=300, k=3)
    probs = torch.softmax(logits, dim=1)
    with pytest.warns(ProbabilityInputWarning, match=rf"{cls.__name__}\.fit takes logits.*log"):
        try:
            cls().fit(probs, labels)
        except RuntimeError:
            pass  # the fit on probabilities may fail; the warning came first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls().fit(logits, labels)  # real logits: no warning


def test_temperature_fit_warning_on_binary_probabilities_and_switch():
    z, labels = _binary_scores(5, n=300)
    with pytest.warns(ProbabilityInputWarning, match=r"torch\.logit\(probs\)"):
        TemperatureScaling().fit(torch.sigmoid(z), labels)
    config.set_probability_warning(False)  # the global switch (restored by conftest)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaling().fit(torch.sigmoid(z), labels)
