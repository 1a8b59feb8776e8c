"""Studies: which loss to pick under label noise and class imbalance.

A study (a TOML file or a bundled preset) trains models across losses, hyper-parameter
grids, noise rates, imbalance factors and seeds, stores every run in SQLite and reports
accuracy, F1 and calibration with tables, figures and a "what to pick" section. The command
line is ``crossent study run | report | list | show``; the same from Python (``run_study``
also takes ``executor="dask:tcp://host:8786"`` or ``"ray:auto"``):

Example:
    >>> from crossent.study import Store, load_preset, run_study, write_report
    >>> config = load_preset("quick")
    >>> summary = run_study(config, "runs/crossent.db", workers=2)   # doctest: +SKIP
    >>> with Store("runs/crossent.db") as store:                     # doctest: +SKIP
    ...     write_report(store, config.name, "runs/quick")

See ``docs/study.md`` for the config format and the presets.
"""

from __future__ import annotations

from crossent.study.config import (
    StudyConfig,
    StudyConfigError,
    load_config,
    load_preset,
    parse_config,
    preset_names,
)
from crossent.study.executors import ExecutorError, RayExecutor, open_executor
from crossent.study.grid import expand, run_id
from crossent.study.models import build_model
from crossent.study.report import print_report, write_report
from crossent.study.results import load_results
from crossent.study.runner import StudySummary, execute_run, run_study
from crossent.study.store import Store, StoreError
from crossent.study.train import train_run

__all__ = [
    "ExecutorError",
    "RayExecutor",
    "Store",
    "StoreError",
    "StudyConfig",
    "StudyConfigError",
    "StudySummary",
    "build_model",
    "execute_run",
    "expand",
    "load_config",
    "load_preset",
    "load_results",
    "open_executor",
    "parse_config",
    "preset_names",
    "print_report",
    "run_id",
    "run_study",
    "train_run",
    "write_report",
]
