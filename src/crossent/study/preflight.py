"""Checks before any run of a study starts: data, noise, model and every loss, built once.

So a config that cannot train fails at once with a :class:`StudyConfigError` naming
``data``, ``noise`` (``noise.mapping``), ``model`` or ``losses[i]``, instead of failing in
every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from crossent.study.config import StudyConfig, StudyConfigError


def _check_noise(runs: list[dict[str, Any]], labels: Any, num_classes: int) -> None:
    """Draw each noise kind of a study once on the training labels.

    So a mapping to a class the data set lacks fails before any run, naming
    ``noise.mapping`` (or ``noise``).
    """
    from crossent.study.prepare import noisy_labels

    drawn = set()
    for run in runs:
        noise = run["noise"]
        if noise["rate"] == 0 or noise["kind"] in drawn:
            continue
        drawn.add(noise["kind"])
        try:
            noisy_labels(labels, noise, num_classes, run["seed"])
        except (ValueError, TypeError) as err:
            path = "noise.mapping" if noise["mapping"] is not None else "noise"
            raise StudyConfigError(path, str(err)) from None


def preflight(config: StudyConfig, runs: list[dict[str, Any]]) -> None:
    """Load the data, draw the noise and build the model and every loss once, before any run.

    Raises:
        StudyConfigError: naming ``data``, ``noise``, ``model`` or ``losses[i]`` and the
            reason.
    """
    from crossent.study.models import build_model
    from crossent.study.prepare import prepare_data
    from crossent.study.taggers import TAGGERS
    from crossent.study.train import make_loss

    if config.model["name"] in TAGGERS:
        from crossent.study.tagging import preflight_tagging

        return preflight_tagging(config, runs)
    clean = {**runs[0], "noise": {"kind": "none", "rate": 0.0, "mapping": None}}
    try:
        data = prepare_data(clean)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise StudyConfigError("data", str(err)) from None
    _check_noise(runs, data.y_train, data.num_classes)
    try:
        build_model(clean["model"], tuple(data.x_train.shape[1:]), data.num_classes)
    except (ValueError, TypeError) as err:
        raise StudyConfigError("model", str(err)) from None
    check_each_loss(config, runs, lambda loss: make_loss(loss, data.y_train, data.num_classes))


def check_each_loss(
    config: Any, runs: list[dict[str, Any]], build: Callable[[dict[str, Any]], object]
) -> None:
    """Call ``build`` once on each distinct loss of ``runs``.

    Raises:
        StudyConfigError: naming ``losses[i]`` (the arm the loss came from) and the reason,
            where ``build`` raises ``ValueError`` or ``TypeError``.
    """
    index = {arm.label: i for i, arm in enumerate(config.losses)}
    built = set()
    for run in runs:
        key = json.dumps(run["loss"], sort_keys=True)
        if key in built:
            continue
        built.add(key)
        try:
            build(run["loss"])
        except (ValueError, TypeError) as err:
            raise StudyConfigError(f"losses[{index[run['loss']['label']]}]", str(err)) from None
