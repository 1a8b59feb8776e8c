"""A Lightning callback that fits temperature scaling on the validation logits of each epoch.

:class:`TemperatureScalingCallback` collects the logits and labels that ``validation_step``
returns, gathers them from every process at the end of validation, fits
:class:`~crossent.calibration.TemperatureScaling` on them and logs the ECE before and after
with the temperature. The calibration metrics themselves, for ``self.log``, are in
:mod:`crossent.integrations.torchmetrics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from crossent.calibration import TemperatureScaling, expected_calibration_error
from crossent.calibration import _validation as V

__all__ = ["TemperatureScalingCallback"]

Extract = Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]]


def _gather_rows(trainer: pl.Trainer, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over the processes in rank order (row counts may differ)."""
    if trainer.world_size == 1:
        return tensor
    strategy = trainer.strategy
    device = strategy.root_device
    local = tensor.to(device)
    sizes = strategy.all_gather(torch.tensor([local.shape[0]], device=device)).reshape(-1)
    padded = local.new_zeros((int(sizes.max()), *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = strategy.all_gather(padded)
    return torch.cat([gathered[rank, :size] for rank, size in enumerate(sizes.tolist())]).cpu()


class TemperatureScalingCallback(pl.Callback):
    r"""Fit temperature scaling on the validation logits at the end of every validation.

    ``validation_step`` returns a mapping with the batch's logits and labels (by default under
    ``"logits"`` and ``"labels"``), or ``extract(outputs, batch)`` finds them. At the end of
    validation the callback gathers them from every process (in rank order; a
    ``DistributedSampler`` that pads the last batch repeats a few rows), fits
    :class:`~crossent.calibration.TemperatureScaling` (:math:`T` minimising the NLL of
    ``softmax(z / T)``) and logs ``{prefix}ece_before_ts``, ``{prefix}ece_after_ts`` and
    ``{prefix}temperature`` (the ECE of :func:`~crossent.calibration.expected_calibration_error`
    with ``n_bins`` bins). The fitted scaler is kept as :attr:`scaler`. The fit and the "after"
    ECE use the same rows, so "after" is optimistic: for an honest number evaluate the scaler
    on a held-out split. The sanity-check run is skipped; a fit that is impossible (fewer than
    20 rows, one class) or fails warns and logs only the "before" ECE. The logits of a whole
    validation set are kept (on the CPU) until the epoch ends.

    Args:
        n_bins: bins of the ECE (default 15).
        prefix: prefix of the logged names (default ``"val/"``).
        logits_key: key of the logits in ``validation_step``'s output (default ``"logits"``).
        labels_key: key of the labels (default ``"labels"``).
        extract: ``extract(outputs, batch) -> (logits, labels)`` instead of the keys.

    Attributes:
        scaler: the :class:`~crossent.calibration.TemperatureScaling` of the last validation
            (``None`` before the first fit).

    Example:
        >>> callback = TemperatureScalingCallback(n_bins=15)
        >>> trainer = pl.Trainer(callbacks=[callback], logger=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        n_bins: int = 15,
        *,
        prefix: str = "val/",
        logits_key: str = "logits",
        labels_key: str = "labels",
        extract: Extract | None = None,
    ) -> None:
        super().__init__()
        self.n_bins = V.check_n_bins(n_bins)
        if not isinstance(prefix, str):
            raise TypeError(f"Expected `prefix` to be a str, but got {type(prefix).__name__}")
        if extract is not None and not callable(extract):
            raise TypeError(f"Expected `extract` to be callable, but got {type(extract).__name__}")
        self.prefix, self.keys, self.extract = prefix, (logits_key, labels_key), extract
        self.scaler: TemperatureScaling | None = None
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def _pair(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.extract is not None:
            return self.extract(outputs, batch)
        if not isinstance(outputs, Mapping) or not all(key in outputs for key in self.keys):
            raise TypeError(
                f"TemperatureScalingCallback expected validation_step to return a mapping with "
                f"{self.keys[0]!r} and {self.keys[1]!r}, but got {type(outputs).__name__}; "
                "return them, or pass extract=lambda outputs, batch: (logits, labels)"
            )
        return outputs[self.keys[0]], outputs[self.keys[1]]

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start collecting the epoch's logits and labels."""
        self._logits, self._labels = [], []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's logits and labels (detached, on the CPU)."""
        if trainer.sanity_checking:
            return
        logits, labels = self._pair(outputs, batch)
        self._logits.append(logits.detach().cpu())
        self._labels.append(labels.detach().cpu())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the logits, fit the temperature and log the ECE before and after."""
        if trainer.sanity_checking or not self._logits:
            return
        logits = _gather_rows(trainer, torch.cat(self._logits))
        labels = _gather_rows(trainer, torch.cat(self._labels))
        self._logits, self._labels = [], []
        ece = expected_calibration_error(logits, labels, n_bins=self.n_bins, from_logits=True)
        # every process holds the same rows and so the same numbers: the mean over them is exact
        pl_module.log(f"{self.prefix}ece_before_ts", float(ece), sync_dist=True)
        try:
            scaler = TemperatureScaling().fit(logits, labels)
        except (ValueError, RuntimeError) as err:
            warnings.warn(f"temperature scaling skipped: {err}", stacklevel=2)
            return
        after = expected_calibration_error(
            scaler(logits), labels, n_bins=self.n_bins, from_logits=True
        )
        pl_module.log(f"{self.prefix}ece_after_ts", float(after), sync_dist=True)
        pl_module.log(f"{self.prefix}temperature", scaler.temperature, sync_dist=True)
        self.scaler = scaler
