import gc

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch", reason="the Lightning integration needs lightning")

from sklearn.datasets import load_digits  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import crossent  # noqa: E402
from crossent.calibration import TemperatureScaling, expected_calibration_error  # noqa: E402
from crossent.integrations.lightning import TemperatureScalingCallback  # noqa: E402
from crossent.integrations.torchmetrics import CalibrationError  # noqa: E402

N_VAL = 360  # divisible by 2 processes x batch 60: no padded rows under DDP


def _digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return TensorDataset(x[:-N_VAL], y[:-N_VAL]), TensorDataset(x[-N_VAL:], y[-N_VAL:])


class DigitsModule(pl.LightningModule):
    """A small MLP on sklearn's 8x8 digits, trained with crossent's focal loss."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.ece = CalibrationError(n_bins=10, from_logits=True)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = crossent.focal_loss(self(x), y, gamma=2.0)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.ece.update(logits, y)
        self.log("val/ece", self.ece, on_epoch=True)
        return {"logits": logits, "labels": y}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def _trainer(**kwargs):
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**{**options, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of training on one process, validated at its end (the callback included)."""
    train, val = _digits()
    model = DigitsModule()
    callback = TemperatureScalingCallback(n_bins=10)
    trainer = _trainer(callbacks=[callback], default_root_dir=tmp_path_factory.mktemp("pl"))
    trainer.fit(
        model,
        DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(val, batch_size=60),
    )
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    return model, val, callback, metrics


def test_one_epoch_with_focal_loss_logs_the_metric_and_the_calibration_fit(trained):
    model, val, callback, metrics = trained
    with torch.no_grad():
        logits = model(val.tensors[0])
    labels = val.tensors[1]
    assert (logits.argmax(1) == labels).float().mean() > 0.6  # it learned (chance: 0.1)
    ece = expected_calibration_error(logits, labels, n_bins=10, from_logits=True).item()
    assert metrics["val/ece"] == pytest.approx(ece, abs=1e-6)  # the metric's float64 vs float32
    assert metrics["val/ece_before_ts"] == pytest.approx(ece, abs=1e-6)
    scaler = TemperatureScaling().fit(logits, labels)
    assert metrics["val/temperature"] == pytest.approx(scaler.temperature, rel=1e-6)
    assert callback.scaler.temperature == pytest.approx(scaler.temperature, rel=1e-9)
    after = expected_calibration_error(scaler(logits), labels, n_bins=10, from_logits=True)
    assert metrics["val/ece_after_ts"] == pytest.approx(after.item(), abs=1e-6)


class _CollectWrappedModels(pl.Callback):
    """Collect the unwrapped DDP model (reference cycles) while the process group is alive.

    Left to the spawned process's exit, PyTorch 2.13 aborts it now and then ("terminate called
    without an active exception"; 9 of 60 plain-PyTorch DDP runs, 0 of 60 when collected).
    Lightning unwraps the model before the teardown hooks run.
    """

    def teardown(self, trainer, pl_module, stage):
        gc.collect()


@pytest.mark.slow
def test_ddp_spawn_on_two_processes_gives_the_one_process_numbers(trained, tmp_path):
    model, val, _, single = trained
    trainer = _trainer(
        devices=2,
        strategy="ddp_spawn",
        callbacks=[TemperatureScalingCallback(n_bins=10), _CollectWrappedModels()],
        default_root_dir=tmp_path,
    )
    trainer.validate(model, DataLoader(val, batch_size=60), verbose=False)
    spawned = {name: float(value) for name, value in trainer.callback_metrics.items()}
    for name in ("val/ece", "val/ece_before_ts", "val/ece_after_ts", "val/temperature"):
        assert spawned[name] == pytest.approx(single[name], rel=1e-6, abs=1e-7), name


def test_callback_explains_a_validation_step_without_logits():
    callback = TemperatureScalingCallback()
    with pytest.raises(TypeError, match=r"mapping with 'logits' and 'labels', but got Tensor"):
        callback._pair(torch.zeros(3), None)
    picked = TemperatureScalingCallback(extract=lambda outputs, batch: (outputs, batch[1]))
    logits, labels = picked._pair(torch.zeros(3, 2), (None, torch.tensor([0, 1, 1])))
    assert logits.shape == (3, 2) and labels.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"`n_bins` <= 10,000"):
        TemperatureScalingCallback(n_bins=10**6)
