"""Calibration: metrics, a streaming meter, post-hoc scalers and reliability diagrams.

* metrics (:mod:`~crossent.calibration.metrics`): :func:`expected_calibration_error`,
  :func:`maximum_calibration_error`, :func:`adaptive_calibration_error`,
  :func:`classwise_calibration_error`, :func:`brier_score`, :func:`negative_log_likelihood`,
  and the per-bin arrays :func:`calibration_bins`;
* :class:`CalibrationMeter`: the same numbers streamed over batches and processes;
* scalers: :class:`TemperatureScaling`, :class:`VectorScaling`, :class:`MatrixScaling`,
  :class:`PlattScaling`;
* pictures: :func:`reliability_diagram`, :func:`confidence_histogram`,
  :func:`reliability_diagrams` (matplotlib is imported only when drawing).

Submodules load on first use of a name, so ``import crossent.calibration`` stays cheap (the
``crossent calibrate`` command and its ``--help`` import nothing heavy).

Example:
    >>> import torch
    >>> from crossent.calibration import expected_calibration_error
    >>> probs = torch.tensor([1.0, 1.0, 0.95, 0.95])
    >>> expected_calibration_error(probs, torch.tensor([1, 0, 1, 1]), n_bins=10)
    tensor(0.2250)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossent.calibration.binning import CalibrationBins, calibration_bins
    from crossent.calibration.meter import CalibrationMeter
    from crossent.calibration.metrics import (
        adaptive_calibration_error,
        brier_score,
        classwise_calibration_error,
        expected_calibration_error,
        maximum_calibration_error,
        negative_log_likelihood,
    )
    from crossent.calibration.plots import (
        confidence_histogram,
        reliability_diagram,
        reliability_diagrams,
    )
    from crossent.calibration.scaling import (
        MatrixScaling,
        PlattScaling,
        TemperatureScaling,
        VectorScaling,
    )

_HOME = {
    "CalibrationBins": "binning",
    "calibration_bins": "binning",
    "CalibrationMeter": "meter",
    "adaptive_calibration_error": "metrics",
    "brier_score": "metrics",
    "classwise_calibration_error": "metrics",
    "expected_calibration_error": "metrics",
    "maximum_calibration_error": "metrics",
    "negative_log_likelihood": "metrics",
    "confidence_histogram": "plots",
    "reliability_diagram": "plots",
    "reliability_diagrams": "plots",
    "MatrixScaling": "scaling",
    "PlattScaling": "scaling",
    "TemperatureScaling": "scaling",
    "VectorScaling": "scaling",
}

__all__ = [
    "CalibrationBins",
    "CalibrationMeter",
    "MatrixScaling",
    "PlattScaling",
    "TemperatureScaling",
    "VectorScaling",
    "adaptive_calibration_error",
    "brier_score",
    "calibration_bins",
    "classwise_calibration_error",
    "confidence_histogram",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_diagram",
    "reliability_diagrams",
]


def __getattr__(name: str) -> object:
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
