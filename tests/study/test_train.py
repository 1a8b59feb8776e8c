import json
import math

import pytest
import torch

import crossent
import crossent.registry
from crossent.study import expand, load_preset, parse_config, train_run
from crossent.study.prepare import prepare_data
from crossent.study.train import _epoch_order, is_converged, make_loss, minimum_loss
from crossent.weights import class_weights
from tests.study.helpers import tiny_raw


def _run(**overrides):
    return expand(parse_config(tiny_raw(**overrides)))


def test_result_is_plain_and_complete():
    config = _run()[0]
    result = train_run(config)
    json.dumps(result["metrics"], allow_nan=False)
    json.dumps(result["history"], allow_nan=False)
    metrics = result["metrics"]
    for key in (
        "accuracy",
        "macro_f1",
        "nll",
        "brier",
        "ece",
        "mce",
        "ace",
        "ece_ts",
        "temperature",
    ):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert len(metrics["per_class_recall"]) == 10
    cm = torch.tensor(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and int(cm.sum()) == result["arrays"]["test_labels"].shape[0]
    assert metrics["accuracy"] == pytest.approx(float(cm.trace() / cm.sum()))
    assert metrics["validation_labels"] == "noisy"
    assert set(result["history"]) == {"train_loss", "test_accuracy", "test_ece"}
    assert all(len(v) == 3 for v in result["history"].values())
    assert result["arrays"]["test_probs"].shape == (cm.sum(), 10)


def test_training_is_deterministic():
    config = _run()[4]
    a, b = train_run(config), train_run(config)
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]


def test_memorised_and_corrected_count_the_flipped_labels():
    config = next(r for r in _run() if r["noise"]["rate"] == 0.4)
    data = prepare_data(config)
    n = data.y_train.shape[0]
    assert int(data.flipped.sum()) == round(0.4 * n)  # symmetric: exactly round(rate * N)
    metrics = train_run(config)["metrics"]
    assert metrics["flipped"] == round(0.4 * n)
    assert metrics["memorised"] + metrics["corrected"] <= metrics["flipped"]
    assert metrics["memorised"] > 0 and metrics["corrected"] > 0


def test_clean_run_has_nothing_flipped():
    metrics = train_run(_run()[0])["metrics"]
    assert metrics["flipped"] == metrics["memorised"] == metrics["corrected"] == 0


@pytest.mark.parametrize("kind", ["noisy", "clean"])
def test_validation_labels_kind(kind):
    data_section = {"name": "digits", "validation_labels": kind}
    config = next(r for r in _run(data=data_section) if r["noise"]["rate"] == 0.4)
    data = prepare_data(config)
    changed = int((data.y_val != data.y_val_clean).sum())
    assert changed == (round(0.4 * data.y_val.shape[0]) if kind == "noisy" else 0)
    assert torch.equal(data.y_test, prepare_data(_run()[0]).y_test)  # test split always clean


def test_imbalance_subsamples_training_only():
    config = _run(imbalance={"factors": [10]})[0]
    data = prepare_data(config)
    counts = torch.bincount(data.y_train, minlength=10)
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.15)
    balanced = prepare_data(_run()[0])
    assert torch.equal(data.y_test, balanced.y_test)
    assert data.y_val.shape == balanced.y_val.shape


def test_class_balanced_sampler_balances_classes():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    order = _epoch_order(labels, "class_balanced", 3, torch.Generator().manual_seed(0))
    share = torch.bincount(labels[order], minlength=3) / order.numel()
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.05)
    perm = _epoch_order(labels, "none", 3, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(1000))


def test_class_weights_are_passed_as_weight(monkeypatch):
    seen = {}

    def fake_get_loss(name, **kwargs):
        seen.update(kwargs, name=name)
        return torch.nn.CrossEntropyLoss()

    monkeypatch.setattr(crossent.registry, "get_loss", fake_get_loss)
    labels = torch.tensor([0] * 8 + [1] * 2)
    loss = {"name": "focal", "params": {"gamma": 2.0}, "class_weights": {"method": "inverse"}}
    make_loss(loss, labels, 2)
    assert seen["name"] == "focal" and seen["gamma"] == 2.0
    expected = class_weights(torch.tensor([8, 2]), method="inverse")
    torch.testing.assert_close(seen["weight"], expected.float())


def test_minimum_loss_of_smoothed_losses():
    k, eps = 10, 0.1
    ce = {"name": "ce", "params": {"label_smoothing": eps}, "class_weights": None}
    fn = torch.nn.CrossEntropyLoss(label_smoothing=eps)
    exact = crossent.min_achievable_loss(k, eps, smoothing="uniform")
    assert minimum_loss(ce, fn, k) == pytest.approx(exact)
    # any other smoothed loss: numeric minimum, checked here on PyTorch's smoothed CE
    other = {"name": "other", "params": {"label_smoothing": eps}, "class_weights": None}
    assert minimum_loss(other, fn, k) == pytest.approx(exact, abs=1e-6)
    plain = torch.nn.CrossEntropyLoss()
    assert minimum_loss({"name": "ce", "params": {}, "class_weights": None}, plain, k) is None


def test_default_smoothing_counts_for_the_minimum():
    # sgce smooths by 0.1 unless told otherwise: its curve needs the excess too.
    sgce = {"name": "sgce", "params": {"q": 0.7}, "class_weights": None}
    fn = make_loss(sgce, torch.tensor([0, 1]), 10)
    assert fn.label_smoothing == 0.1
    minimum = minimum_loss(sgce, fn, 10)
    assert minimum is not None and minimum > 0
    result = train_run(_run(losses=[{"label": "sgce", "loss": "sgce"}])[0])
    assert result["metrics"]["min_train_loss"] == pytest.approx(minimum, rel=1e-6)
    assert "train_loss_excess" in result["history"]


def test_smoothed_run_records_the_excess():
    losses = [{"label": "ls", "loss": "ce", "params": {"label_smoothing": 0.1}}]
    result = train_run(_run(losses=losses)[0])
    history = result["history"]
    minimum = result["metrics"]["min_train_loss"]
    assert minimum == pytest.approx(crossent.min_achievable_loss(10, 0.1))
    assert history["train_loss_excess"] == pytest.approx(
        [v - minimum for v in history["train_loss"]]
    )


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([2.3] + [1.0] * 20, True),
        ([2.3, 1.0, 0.5, 0.4, 0.3], False),
        ([1.0] * 9 + [0.995], True),  # fell by 0.5% of the first epoch's loss
        ([1.0] * 9 + [0.98], False),  # 2%
        ([5.0, 2.0, 1e-3, 9e-4], True),  # CE heading to 0: small absolute fall
        ([1.0], False),
    ],
)
def test_is_converged(losses, expected):
    assert is_converged(losses) is expected


def test_convergence_uses_the_excess_of_smoothed_losses():
    # the last step falls 0.008: 0.8% of the first loss 1.0, but 1.8% of its excess 0.45
    assert is_converged([1.0, 0.8, 0.608, 0.6], minimum=None) is True
    assert is_converged([1.0, 0.8, 0.608, 0.6], minimum=0.55) is False


def test_non_finite_loss_fails_the_run():
    config = _run(training={"epochs": 5, "lr": 1e30})[0]
    with pytest.raises(FloatingPointError, match="training loss became"):
        train_run(config)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("preset", ["noise", "quick"])
def test_ce_on_clean_digits_reaches_095_in_the_presets(preset, seed):
    # "CE on clean digits must reach >= 0.95 test accuracy in the presets": every seed.
    runs = expand(load_preset(preset))
    config = next(
        r
        for r in runs
        if r["loss"]["label"] == "ce" and r["noise"]["rate"] == 0 and r["seed"] == seed
    )
    metrics = train_run(config)["metrics"]
    assert metrics["accuracy"] >= 0.95
    assert metrics["converged"]


def test_a_temperature_fit_without_a_minimum_keeps_the_run(monkeypatch):
    from crossent.calibration import TemperatureScaling

    def no_minimum(self, logits, labels):
        raise RuntimeError("temperature scaling ended on the bound T = 100")

    monkeypatch.setattr(TemperatureScaling, "fit", no_minimum)
    metrics = train_run(_run()[0])["metrics"]
    assert metrics["temperature"] is None and metrics["ece_ts"] is None
    assert "bound" in metrics["ts_error"]
    assert metrics["ece"] >= 0
