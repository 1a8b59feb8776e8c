"""Expansion of a study into resolved run configs, and their stable ids.

:func:`expand` turns a validated :class:`~crossent.study.config.StudyConfig` into one
resolved, JSON-serialisable run config per (seed, imbalance factor, noise kind, noise rate,
loss variant), every default filled in. A run's id is the SHA-256 of its canonical JSON
(sorted keys, no spaces), seeds included, so ids are stable across machines and re-runs and
a run shared by two studies is trained once.

Example:
    >>> from crossent.study.config import load_preset
    >>> runs = expand(load_preset("quick"))
    >>> len(runs), runs[0]["seed"], len(run_id(runs[0]))
    (12, 0, 16)
    >>> describe_run(runs[3])
    'gce | symmetric 0.4 | seed 0'
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

from crossent.study.config import StudyConfig


def canonical_json(config: dict[str, Any]) -> str:
    """The canonical JSON text of a resolved config: sorted keys, no spaces."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(config: dict[str, Any]) -> str:
    """The stable id of a resolved run config: first 16 hex digits of SHA-256 of its JSON."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


def expand(config: StudyConfig) -> list[dict[str, Any]]:
    """Resolve a study into one run config per setting, loss variant and seed.

    Seeds are the outer loop, so a study stopped half-way already covers every setting once.
    A noise rate of 0 is the same run for every kind: it is resolved to kind ``"none"`` and
    duplicates are dropped. Each resolved config is JSON-serialisable and canonical, and
    ``run_id(config)`` identifies it.
    """
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    variants = [v for arm in config.losses for v in arm.variants()]
    settings = itertools.product(
        config.seeds, config.imbalance_factors, config.noise_kinds, config.noise_rates, variants
    )
    for seed, factor, kind, rate, loss in settings:
        noisy = rate > 0
        run = {
            "data": config.data,
            "model": config.model,
            "training": config.training,
            "loss": loss,
            "noise": {
                "kind": kind if noisy else "none",
                "rate": rate,
                "mapping": config.noise_mapping if noisy and kind == "asymmetric" else None,
            },
            "imbalance_factor": factor,
            "seed": seed,
        }
        run = json.loads(canonical_json(run))  # a deep, JSON-normalised copy
        rid = run_id(run)
        if rid not in seen:
            seen.add(rid)
            runs.append(run)
    return runs


def describe_run(config: dict[str, Any]) -> str:
    """A one-line description: ``gce q=0.7 | symmetric 0.4 | IF 10 | seed 1``."""
    parts = [variant_name(config["loss"])]
    noise = config["noise"]
    parts.append("clean" if noise["kind"] == "none" else f"{noise['kind']} {noise['rate']:g}")
    if config["imbalance_factor"] != 1:
        parts.append(f"IF {config['imbalance_factor']:g}")
    parts.append(f"seed {config['seed']}")
    return " | ".join(parts)


def variant_name(loss: dict[str, Any]) -> str:
    """The display name of a loss variant: its label and grid point (``gce q=0.7``)."""
    point = " ".join(f"{k}={_short(v)}" for k, v in loss["grid"].items())
    return f"{loss['label']} {point}" if point else loss["label"]


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_loss_spec(name: str, params: dict[str, Any]) -> str:
    """Write a loss back as a call string, e.g. ``gce(q=0.7)``."""
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
