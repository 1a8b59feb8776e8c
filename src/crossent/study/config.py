"""Study configuration: TOML parsing, validation and expansion into resolved run configs.

A study is one TOML file (or a bundled preset, see :func:`preset_names`)::

    [study]
    name = "noise"
    seeds = [0, 1, 2]

    [data]
    name = "digits"              # any name of crossent.data.dataset_names(), csv:PATH, npz:PATH
    validation_labels = "noisy"  # or "clean"; the test split is always clean

    [model]
    name = "mlp"                 # linear | mlp | cnn | bilstm | transformer | hf
    hidden = [128]

    [training]
    epochs = 100
    batch_size = 128             # 0 = full batch
    lr = 0.001

    [noise]
    kind = "symmetric"           # or a list of kinds
    rates = [0.0, 0.2, 0.4]

    [imbalance]
    factors = [1]

    [[losses]]
    label = "gce"
    loss = "gce"                 # registry name or call string, e.g. "focal(gamma=2)"
    grid = { q = [0.3, 0.7] }    # hyper-parameter grid (Cartesian product)

Every problem is reported before any run starts as a :class:`StudyConfigError` naming the key
path and the reason (``losses[1].grid.q: expected a non-empty list, but got 0.7``).
:func:`crossent.study.grid.expand` turns the validated :class:`StudyConfig` into resolved
run configs.

Example:
    >>> cfg = load_preset("quick")
    >>> cfg.name, cfg.noise_rates, [arm.label for arm in cfg.losses]
    ('quick', [0.0, 0.4], ['ce', 'gce'])
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from crossent.data import NOISE_KINDS
from crossent.data.tag_noise import TAG_NOISE_KINDS
from crossent.study._reader import StudyConfigError, Table, choice, number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MODELS = ("linear", "mlp", "cnn", "bilstm", "transformer", "hf")
OPTIMIZERS = ("adam", "sgd")
#: Per-sample kinds, then the span kinds of tag sequences (``crossent.data.tag_noise``).
ALL_NOISE_KINDS = tuple(dict.fromkeys((*NOISE_KINDS, *TAG_NOISE_KINDS)))
VALIDATION_LABELS = ("noisy", "clean")
WEIGHT_METHODS = ("inverse", "inverse_sqrt", "effective_number")
SAMPLERS = ("none", "class_balanced")
ASYMMETRIC_MAPPINGS = ("cifar10",)
#: Built-in data sets read from files in ``data_dir`` (besides ``csv:PATH``, ``npz:PATH``).
FILE_BACKED = ("cifar10", "fashion-mnist", "conll2003")


@dataclass(frozen=True)
class LossArm:
    """One ``[[losses]]`` entry: a loss with fixed parameters and a hyper-parameter grid."""

    label: str
    name: str
    params: dict[str, Any]
    grid: dict[str, list[Any]]
    class_weights: dict[str, Any] | None = None
    sampler: str = "none"

    def variants(self) -> list[dict[str, Any]]:
        """The resolved loss of every grid point, in grid order."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            out.append(
                {
                    "label": self.label,
                    "name": self.name,
                    "params": {**self.params, **point},
                    "grid": point,
                    "class_weights": self.class_weights,
                    "sampler": self.sampler,
                }
            )
        return out


@dataclass(frozen=True)
class StudyConfig:
    """A validated study: every section with its defaults filled in (see the module doc)."""

    name: str
    description: str
    seeds: list[int]
    data: dict[str, Any]
    model: dict[str, Any]
    training: dict[str, Any]
    noise_kinds: list[str]
    noise_rates: list[float]
    noise_mapping: str | dict[str, int] | None
    imbalance_factors: list[float]
    losses: list[LossArm] = field(default_factory=list)
    source: str = ""
    data_shared: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (stored with the study)."""
        return {
            "name": self.name,
            "description": self.description,
            "seeds": self.seeds,
            "data": {**self.data, "shared": self.data_shared},
            "model": self.model,
            "training": self.training,
            "noise": {
                "kind": self.noise_kinds,
                "rates": self.noise_rates,
                "mapping": self.noise_mapping,
            },
            "imbalance": {"factors": self.imbalance_factors},
            "losses": [arm.__dict__ for arm in self.losses],
            "source": self.source,
        }


# ---------------------------------------------------------------- sections


def _parse_data(t: Table) -> tuple[dict[str, Any], bool]:
    """The ``[data]`` section and its ``shared`` flag (kept out of the run configs)."""
    name = t.string("name", "digits")
    shared = t.get("shared", False)
    if not isinstance(shared, bool):
        raise StudyConfigError(t.at("shared"), f"expected true or false, but got {shared!r}")
    options = t.get("options", {})
    if not isinstance(options, dict):
        raise StudyConfigError(t.at("options"), f"expected a table, but got {options!r}")
    data_dir = t.get("data_dir", None)
    if data_dir is not None and not isinstance(data_dir, str):
        raise StudyConfigError(t.at("data_dir"), f"expected a path string, but got {data_dir!r}")
    out = {
        "name": name,
        "options": options,
        "data_dir": data_dir,
        "validation_fraction": t.number(
            "validation_fraction", 0.15, low=0, high=0.5, low_open=True
        ),
        "test_fraction": t.number("test_fraction", 0.2, low=0, high=0.5, low_open=True),
        "validation_labels": t.string("validation_labels", "noisy", VALIDATION_LABELS),
    }
    t.done()
    _check_dataset_name(name, t.at("name"))
    return out, shared


def _check_dataset_name(name: str, path: str) -> None:
    """Reject a data set name the data module does not know (no file is opened)."""
    from crossent.data import check_dataset_name

    try:
        check_dataset_name(name)
    except (TypeError, ValueError) as err:
        raise StudyConfigError(path, str(err)) from None


def _widths(t: Table, key: str, default: list[int]) -> list[int]:
    value = t.get(key, default)
    if not isinstance(value, list):
        raise StudyConfigError(t.at(key), f"expected a list of integers, but got {value!r}")
    return [number(v, f"{t.at(key)}[{i}]", low=1, integer=True) for i, v in enumerate(value)]


def _parse_model(t: Table) -> dict[str, Any]:
    name = t.string("name", "mlp", MODELS)
    out: dict[str, Any] = {"name": name}
    if name in ("mlp", "cnn"):
        out["hidden"] = _widths(t, "hidden", [128])
        out["dropout"] = t.number("dropout", 0.0, low=0.0, high=1.0)
    if name == "cnn":
        out["channels"] = _widths(t, "channels", [32, 64])
        out["kernel_size"] = t.number("kernel_size", 3, low=1, integer=True)
    if name in _TAGGER_SECTIONS:
        out.update(_TAGGER_SECTIONS[name](t))
    t.done()
    return out


def _bilstm(t: Table) -> dict[str, Any]:
    return {
        "embedding_dim": t.number("embedding_dim", 64, low=1, integer=True),
        "hidden_size": t.number("hidden_size", 64, low=1, integer=True),
        "layers": t.number("layers", 1, low=1, integer=True),
        "dropout": t.number("dropout", 0.0, low=0.0, high=1.0),
    }


def _transformer(t: Table) -> dict[str, Any]:
    out = {
        "embedding_dim": t.number("embedding_dim", 64, low=1, integer=True),
        "heads": t.number("heads", 4, low=1, integer=True),
        "layers": t.number("layers", 2, low=1, integer=True),
        "feedforward": t.number("feedforward", 128, low=1, integer=True),
        "dropout": t.number("dropout", 0.1, low=0.0, high=1.0),
        "max_length": t.number("max_length", 128, low=1, integer=True),
    }
    if out["embedding_dim"] % out["heads"]:
        raise StudyConfigError(
            t.at("heads"),
            f"expected a divisor of embedding_dim={out['embedding_dim']}, got {out['heads']}",
        )
    return out


def _hf(t: Table) -> dict[str, Any]:
    path, config = t.get("path", None), t.get("config", None)
    if (path is None) == (config is None):
        raise StudyConfigError(
            t.at("path"), "expected exactly one of `path` (a local model folder) and `config`"
        )
    if path is not None and (not isinstance(path, str) or not path):
        raise StudyConfigError(t.at("path"), f"expected a folder path, but got {path!r}")
    if config is not None and not isinstance(config, dict):
        raise StudyConfigError(t.at("config"), f"expected a table, but got {config!r}")
    return {"path": path, "config": config}


_TAGGER_SECTIONS = {"bilstm": _bilstm, "transformer": _transformer, "hf": _hf}


def _parse_training(t: Table) -> dict[str, Any]:
    out = {
        "epochs": t.number("epochs", 100, low=1, integer=True),
        "batch_size": t.number("batch_size", 128, low=0, integer=True),
        "optimizer": t.string("optimizer", "adam", OPTIMIZERS),
        "lr": t.number("lr", 1e-3, low=0, low_open=True),
        "weight_decay": t.number("weight_decay", 0.0, low=0),
        "momentum": t.number("momentum", 0.9, low=0, high=1),
    }
    t.done()
    return out


def _parse_noise(t: Table) -> tuple[list[str], list[float], str | dict[str, int] | None]:
    kind = t.get("kind", "symmetric")
    kinds = kind if isinstance(kind, list) else [kind]
    if not kinds:
        raise StudyConfigError(t.at("kind"), "expected a kind or a non-empty list of kinds")
    for i, k in enumerate(kinds):
        path = f"{t.at('kind')}[{i}]" if isinstance(kind, list) else t.at("kind")
        choice(k, path, ALL_NOISE_KINDS)
    rates = t.numbers("rates", [0.0], low=0.0, high=1.0)
    if "asymmetric" in kinds and max(rates) >= 0.5:
        raise StudyConfigError(
            t.at("rates"),
            f"asymmetric noise needs rates < 0.5 (the flipped label would become the majority), "
            f"but got {max(rates):g}",
        )
    mapping = t.get("mapping", None)
    if mapping is not None:
        if "asymmetric" not in kinds:
            raise StudyConfigError(t.at("mapping"), "only used with kind = 'asymmetric'")
        mapping = _parse_mapping(mapping, t.at("mapping"))
    t.done()
    return kinds, rates, mapping


def _parse_mapping(mapping: object, path: str) -> str | dict[str, int]:
    """A built-in mapping's name (``"cifar10"``) or a table source class -> target class."""
    if isinstance(mapping, str):
        return choice(mapping, path, ASYMMETRIC_MAPPINGS)
    if not isinstance(mapping, dict) or not mapping:
        raise StudyConfigError(
            path,
            f"expected one of {', '.join(map(repr, ASYMMETRIC_MAPPINGS))} or a table "
            f"source class -> target class, but got {mapping!r}",
        )
    out = {}
    for key, value in mapping.items():
        if not key.isdigit():
            raise StudyConfigError(f"{path}.{key}", "expected a class index as the key")
        out[str(int(key))] = number(value, f"{path}.{key}", low=0, integer=True)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _parse_grid(t: Table, key: str) -> dict[str, list[Any]]:
    grid = t.get(key, {})
    if not isinstance(grid, dict):
        raise StudyConfigError(t.at(key), f"expected a table of lists, but got {grid!r}")
    out = {}
    for name, values in grid.items():
        path = f"{t.at(key)}.{name}"
        if not isinstance(values, list) or not values:
            raise StudyConfigError(path, f"expected a non-empty list, but got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise StudyConfigError(path, f"expected distinct values, but got {values!r}")
        # q = [0, 0.1] mixes int and float: make the axis one type so labels and ids agree.
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            if any(isinstance(v, float) for v in values):
                values = [float(v) for v in values]
        out[name] = values
    return out


def _parse_class_weights(t: Table) -> dict[str, Any] | None:
    raw = t.get("class_weights", None)
    if raw is None:
        return None
    w = Table(raw, t.at("class_weights"))
    out = {"method": w.string("method", "inverse", WEIGHT_METHODS)}
    if out["method"] == "effective_number":
        out["beta"] = w.number("beta", 0.999, low=0)
        if out["beta"] >= 1:
            raise StudyConfigError(w.at("beta"), f"expected < 1, but got {out['beta']!r}")
    w.done()
    return out


def _parse_loss(raw: object, path: str) -> LossArm:
    t = Table(raw, path)
    spec = t.string("loss")
    name, spec_params = _parse_spec(spec, t.at("loss"))
    params = t.get("params", {})
    if not isinstance(params, dict):
        raise StudyConfigError(t.at("params"), f"expected a table, but got {params!r}")
    grid = _parse_grid(t, "grid")
    for key in params:
        if key in spec_params:
            raise StudyConfigError(f"{t.at('params')}.{key}", f"also given in `loss = {spec!r}`")
    for key in grid:
        if key in spec_params or key in params:
            raise StudyConfigError(f"{t.at('grid')}.{key}", "also given as a fixed parameter")
    arm = LossArm(
        label=t.string("label", spec),
        name=name,
        params={**spec_params, **params},
        grid=grid,
        class_weights=_parse_class_weights(t),
        sampler=t.string("sampler", "none", SAMPLERS),
    )
    t.done()
    origins = {key: t.at("loss") for key in spec_params}
    origins.update({key: f"{t.at('params')}.{key}" for key in params})
    origins.update({key: f"{t.at('grid')}.{key}" for key in grid})
    _check_loss(arm, path, origins)
    return arm


def _parse_spec(spec: str, path: str) -> tuple[str, dict[str, Any]]:
    """Registry name and keyword arguments of a loss spec; only multiclass losses train here."""
    from crossent.registry import loss_kind, parse_spec

    try:
        name, params = parse_spec(spec)
        kind = loss_kind(name)
    except ValueError as err:
        raise StudyConfigError(path, str(err)) from None
    if kind != "multiclass":
        reason = f"{name!r} takes {kind} inputs; a study trains multiclass losses (logits, labels)"
        raise StudyConfigError(path, reason)
    return name, params


def _check_loss(arm: LossArm, path: str, origins: dict[str, str]) -> None:
    """Build every variant's loss once so bad names and hyper-parameters fail up front.

    ``origins`` maps each parameter to the key path it was given at (``losses[1].grid.q``,
    ``losses[1].params.gamma`` or ``losses[1].loss``); the error names the path of the
    parameter the message is about.
    """
    from crossent.registry import get_loss
    from crossent.study.token_losses import span_smoothing

    for variant in arm.variants():
        try:
            span_smoothing(variant["params"])
            get_loss(arm.name, **variant["params"])
        except (ValueError, TypeError, NotImplementedError) as err:
            culprits = [origins[k] for k in variant["params"] if f"`{k}`" in str(err)]
            fallback = f"{path}.grid" if variant["grid"] else f"{path}.loss"
            shown = ", ".join(f"{k}={v!r}" for k, v in variant["params"].items())
            reason = f"{arm.name}({shown}) is invalid: {err}"
            raise StudyConfigError(culprits[0] if culprits else fallback, reason) from None


# ---------------------------------------------------------------- entry points


def parse_config(raw: dict[str, Any], *, name: str = "study", source: str = "") -> StudyConfig:
    """Validate a study config given as a dict (a parsed TOML document).

    Args:
        raw: the document.
        name: the study name used when ``[study] name`` is absent.
        source: where the config came from (a path or ``preset:NAME``), kept for the report.

    Returns:
        The validated :class:`StudyConfig` with every default filled in.

    Raises:
        StudyConfigError: naming the first invalid key path and the reason.
    """
    root = Table(raw, "")
    study = root.table("study")
    study_name = study.string("name", name)
    description = study.get("description", "")
    if not isinstance(description, str):
        raise StudyConfigError(study.at("description"), f"expected a string, got {description!r}")
    seeds = study.numbers("seeds", [0], low=0, integer=True)
    study.done()
    data, shared = _parse_data(root.table("data"))
    model = _parse_model(root.table("model"))
    training = _parse_training(root.table("training"))
    kinds, rates, mapping = _parse_noise(root.table("noise"))
    imbalance = root.table("imbalance")
    factors = imbalance.numbers("factors", [1.0], low=1.0)
    imbalance.done()
    losses = _parse_losses(root.get("losses"))
    root.done()
    return StudyConfig(
        name=study_name,
        description=description,
        seeds=seeds,
        data=data,
        model=model,
        training=training,
        noise_kinds=kinds,
        noise_rates=rates,
        noise_mapping=mapping,
        imbalance_factors=factors,
        losses=losses,
        source=source,
        data_shared=shared,
    )


def _parse_losses(raw: object) -> list[LossArm]:
    if not isinstance(raw, list) or not raw:
        raise StudyConfigError("losses", "expected at least one [[losses]] entry")
    losses = [_parse_loss(entry, f"losses[{i}]") for i, entry in enumerate(raw)]
    labels = [arm.label for arm in losses]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise StudyConfigError(f"losses[{i}].label", f"duplicate label {label!r}")
    return losses


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file; the study name defaults to the file's stem.

    Raises:
        StudyConfigError: for a file that cannot be read, is not UTF-8 or not valid TOML
            (path ``<file>``), or an invalid key.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        reason = (
            f"{path} is not UTF-8 text (byte {byte:#04x} at offset {err.start}): save it as UTF-8"
        )
        raise StudyConfigError("<file>", reason) from None
    except OSError as err:
        raise StudyConfigError("<file>", f"cannot read {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise StudyConfigError("<file>", f"{path} is not valid TOML: {err}") from None
    return parse_config(raw, name=path.stem, source=str(path))


def preset_names() -> list[str]:
    """Names of the presets bundled with the package (``noise`` is the default)."""
    folder = resources.files("crossent.study") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of a bundled preset."""
    names = preset_names()
    if name not in names:
        allowed = ", ".join(repr(n) for n in names)
        raise ValueError(f"Expected `preset` to be one of {allowed}, but got {name!r}")
    return (resources.files("crossent.study") / "presets" / f"{name}.toml").read_text("utf-8")


def load_preset(name: str) -> StudyConfig:
    """Read and validate a bundled preset (see :func:`preset_names`)."""
    return parse_config(tomllib.loads(preset_text(name)), name=name, source=f"preset:{name}")
