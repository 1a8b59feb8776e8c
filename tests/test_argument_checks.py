"""Meta-test of the declared argument checks (crossent.core.params).

Every public loss (each registry name: its function and its module), calibration metric and
scaler declares the constraints of its hyper-parameters; each is called here with every value
its constraints reject, and must raise an error that names the argument and the value.
"""

import inspect

import pytest
import torch

import crossent.calibration as C
from crossent import registry
from crossent.core.params import constraints_of
from tests.reference_registry import inputs

# Arguments that are data, not settings (checked against the input, not declared).
DATA = {"input", "target", "student_logits", "teacher_logits", "labels", "probs", "predictions"}
# Plot arguments (a matplotlib Axes, a title) are drawn with, not checked.
DRAWING = {"ax", "title"}

METRICS = [
    C.expected_calibration_error,
    C.maximum_calibration_error,
    C.adaptive_calibration_error,
    C.classwise_calibration_error,
    C.calibration_bins,
    C.brier_score,
    C.negative_log_likelihood,
    C.reliability_diagram,
    C.confidence_histogram,
]
CLASSES = [
    C.CalibrationMeter,
    C.TemperatureScaling,
    C.VectorScaling,
    C.MatrixScaling,
    C.PlattScaling,
]


def _settings(function):
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.name not in DATA | DRAWING and p.kind is not p.VAR_KEYWORD and p.name != "self"
    ]


def _shown(value, message):
    """Whether ``message`` shows ``value`` (its repr, or that of one of its items)."""
    texts = {repr(value), str(value)}
    if isinstance(value, list | tuple):
        texts |= {repr(v) for v in value}
    return any(t in message for t in texts)


def _cases():
    for name in registry.available_losses():
        function = registry.loss_function(name)
        for param, constraint in constraints_of(function).items():
            for bad in constraint.invalid():
                yield pytest.param(name, param, bad, id=f"{name}-{param}-{bad!r}")


@pytest.mark.parametrize(
    "function",
    [registry.loss_function(n) for n in registry.available_losses()] + METRICS,
    ids=lambda f: f.__name__,
)
def test_every_setting_of_every_public_function_is_declared(function):
    declared = constraints_of(function)
    assert declared, f"{function.__name__} declares no constraints"
    missing = set(_settings(function)) - set(declared)
    assert not missing, f"{function.__name__}: no constraint for {sorted(missing)}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_setting_of_every_scaler_and_meter_is_declared(cls):
    declared = constraints_of(cls.__init__)
    assert set(_settings(cls.__init__)) <= set(declared)


@pytest.mark.parametrize(("name", "param", "bad"), list(_cases()))
def test_every_loss_and_its_module_refuse_each_bad_value(name, param, bad):
    args, _ = inputs(registry.loss_kind(name))
    function, module = registry.loss_function(name), registry.loss_class(name)
    with pytest.raises((ValueError, TypeError)) as err:
        function(*args, **{param: bad})
    assert f"`{param}" in str(err.value) and _shown(bad, str(err.value)), str(err.value)
    if param in inspect.signature(module).parameters:
        with pytest.raises((ValueError, TypeError)) as err:
            module(**{param: bad})
        assert f"`{param}" in str(err.value) and _shown(bad, str(err.value)), str(err.value)


def _metric_cases():
    for function in METRICS:
        for param, constraint in constraints_of(function).items():
            for bad in constraint.invalid():
                yield pytest.param(function, param, bad, id=f"{function.__name__}-{param}-{bad!r}")
    for cls in CLASSES:
        for param, constraint in constraints_of(cls.__init__).items():
            for bad in constraint.invalid():
                yield pytest.param(cls, param, bad, id=f"{cls.__name__}-{param}-{bad!r}")


@pytest.mark.parametrize(("callable_", "param", "bad"), list(_metric_cases()))
def test_every_metric_scaler_and_meter_refuses_each_bad_value(callable_, param, bad):
    probs = torch.softmax(torch.randn(30, 3, generator=torch.Generator().manual_seed(0)), 1)
    labels = torch.arange(30) % 3
    with pytest.raises((ValueError, TypeError)) as err:
        if inspect.isclass(callable_):
            callable_(**{param: bad})
        else:
            callable_(probs, labels, **{param: bad})
    assert f"`{param}" in str(err.value) and _shown(bad, str(err.value)), str(err.value)


def test_range_errors_are_runtime_errors_as_pytorch_raises_them():
    args, _ = inputs("multiclass")
    with pytest.raises(RuntimeError, match=r"`label_smoothing` in \[0, 1\], but got 1.5"):
        registry.loss_function("ce")(*args, label_smoothing=1.5)
    with pytest.raises(RuntimeError, match=r"`weight` to have shape \(5,\)"):
        registry.loss_function("ce")(*args, weight=torch.ones(3, dtype=torch.float64))
