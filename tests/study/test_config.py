import json

import pytest

from crossent.registry import parse_spec
from crossent.study import (
    StudyConfigError,
    expand,
    load_config,
    load_preset,
    parse_config,
    preset_names,
    run_id,
)
from crossent.study.grid import canonical_json, describe_run, format_loss_spec, variant_name
from tests.study.helpers import tiny_raw


def test_presets_are_bundled_and_valid():
    assert {"noise", "gce-grid", "focal-grid", "imbalance", "quick"} <= set(preset_names())
    for name in preset_names():
        cfg = load_preset(name)
        assert cfg.name == name
        assert expand(cfg)


def test_noise_preset_is_the_issue_grid():
    cfg = load_preset("noise")
    runs = expand(cfg)
    assert len(runs) == 7 * 5 * 3
    assert cfg.data["name"] == "digits" and cfg.data["validation_labels"] == "noisy"
    assert cfg.noise_kinds == ["symmetric"]
    assert cfg.noise_rates == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert cfg.seeds == [0, 1, 2]
    losses = {(arm.name, json.dumps(arm.params, sort_keys=True)) for arm in cfg.losses}
    assert losses == {
        ("ce", "{}"),
        ("ce", '{"label_smoothing": 0.1, "smoothing": "others"}'),
        ("focal", '{"gamma": 2.0}'),
        ("gce", '{"q": 0.7}'),
        ("sgce", '{"label_smoothing": 0.1, "q": 0.7}'),
        ("sce", '{"alpha": 0.1, "beta": 1.0}'),
        ("apl", '{"active": "nce", "passive": "rce"}'),
    }


def test_gce_grid_preset():
    cfg = load_preset("gce-grid")
    assert cfg.noise_kinds == ["uniform"]
    assert cfg.noise_rates == [0.0, 0.2, 0.4, 0.6, 0.8]
    arms = {arm.name: arm for arm in cfg.losses}
    assert set(arms) == {"gce", "sgce"}
    for arm in arms.values():
        assert arm.grid["q"] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]


def test_imbalance_preset_weights_are_weight_kwargs():
    cfg = load_preset("imbalance")
    assert cfg.data["name"] == "mnist1d"
    assert cfg.imbalance_factors == [1.0, 10.0, 50.0, 100.0]
    betas = sorted(
        arm.class_weights["beta"]
        for arm in cfg.losses
        if arm.name == "ce"
        and arm.class_weights
        and arm.class_weights["method"] == "effective_number"
    )
    assert betas == [0.9, 0.99, 0.999]
    assert any(arm.sampler == "class_balanced" for arm in cfg.losses)
    assert any(arm.name == "focal" and arm.class_weights for arm in cfg.losses)
    assert all("weight" not in arm.params for arm in cfg.losses)


def test_expand_ids_are_stable_canonical_and_distinct(tiny):
    runs = expand(tiny)
    assert len(runs) == 2 * 2 * 3  # seeds x rates x variants
    ids = [run_id(r) for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids == [run_id(r) for r in expand(parse_config(tiny_raw()))]
    for run in runs:
        text = canonical_json(run)
        assert json.loads(text) == run
        assert text == json.dumps(run, sort_keys=True, separators=(",", ":"))
    # seeds are the outer loop and part of the identity
    assert [r["seed"] for r in runs[:6]] == [0] * 6
    a, b = runs[0], dict(runs[0], seed=1)
    assert run_id(a) != run_id(b)


def test_key_order_in_the_file_does_not_change_ids(tmp_path):
    one = tmp_path / "one.toml"
    two = tmp_path / "two.toml"
    one.write_text(
        '[study]\nname = "s"\n[training]\nepochs = 2\nlr = 0.01\n[[losses]]\nloss = "gce(q=0.5)"\n'
    )
    two.write_text(
        '[[losses]]\nloss = "gce"\nparams = { q = 0.5 }\nlabel = "gce(q=0.5)"\n'
        '[training]\nlr = 0.01\nepochs = 2\n[study]\nname = "s"\n'
    )
    assert [run_id(r) for r in expand(load_config(one))] == [
        run_id(r) for r in expand(load_config(two))
    ]


def test_rate_zero_is_one_run_for_all_kinds():
    cfg = parse_config(tiny_raw(noise={"kind": ["symmetric", "uniform"], "rates": [0.0, 0.2]}))
    runs = expand(cfg)
    kinds = [(r["noise"]["kind"], r["noise"]["rate"]) for r in runs if r["seed"] == 0]
    assert kinds.count(("none", 0.0)) == 3  # once per variant, not once per kind
    assert ("symmetric", 0.2) in kinds and ("uniform", 0.2) in kinds


def test_mixed_int_float_grid_is_one_type():
    raw = tiny_raw(losses=[{"loss": "gce", "grid": {"q": [0, 0.5, 1]}}])
    runs = expand(parse_config(raw))
    assert {type(r["loss"]["params"]["q"]) for r in runs} == {float}
    assert variant_name(runs[0]["loss"]) == "gce q=0"


def test_defaults_are_filled_in(tiny):
    run = expand(tiny)[0]
    assert run["training"] == {
        "epochs": 3,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 0.01,
        "weight_decay": 0.0,
        "momentum": 0.9,
    }
    assert run["data"]["validation_labels"] == "noisy"
    assert run["imbalance_factor"] == 1.0
    assert describe_run(run) == "ce | clean | seed 0"


def _set(raw, path, value):
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return raw


BAD = [
    ("noise.rates", [0.2, 1.5], r"`noise.rates\[1\]`: expected <= 1"),
    ("noise.rates", 0.2, r"`noise.rates`: expected a non-empty list"),
    ("noise.rates", [], r"`noise.rates`: expected a non-empty list"),
    ("noise.kind", "gaussian", r"`noise.kind`: expected one of 'symmetric'"),
    ("noise.kind", ["symmetric", "pair"], r"`noise.kind\[1\]`"),
    ("noise.typo", 1, r"`noise.typo`: unknown key"),
    ("model.name", "resnet", r"`model.name`: expected one of 'linear', 'mlp', 'cnn'"),
    ("model.hidden", [16, 0], r"`model.hidden\[1\]`: expected >= 1"),
    ("training.epochs", 0, r"`training.epochs`: expected >= 1"),
    ("training.epochs", 2.5, r"`training.epochs`: expected an integer"),
    ("training.lr", 0, r"`training.lr`: expected > 0"),
    ("training.lr", "fast", r"`training.lr`: expected a number"),
    ("training.optimizer", "lamb", r"`training.optimizer`"),
    ("data.name", "imagenet", r"`data.name`: Expected `name` to be one of 'digits'"),
    ("data.validation_labels", "noisyish", r"`data.validation_labels`"),
    ("study.seeds", [0, 0], r"`study.seeds`: expected distinct values"),
    ("study.seeds", [-1], r"`study.seeds\[0\]`: expected >= 0"),
    ("imbalance.factors", [0.5], r"`imbalance.factors\[0\]`: expected >= 1"),
    ("losses", [], r"`losses`: expected at least one"),
    ("losses.1.grid", {"q": 0.5}, r"`losses\[1\].grid.q`: expected a non-empty list"),
    ("losses.1.grid", {"q": [0.5, 0.5]}, r"`losses\[1\].grid.q`: expected distinct"),
    (
        "losses.1.grid",
        {"q": [0.5, 1.5]},
        r"`losses\[1\].grid.q`: gce\(q=1.5\) is invalid: Expected `q`",
    ),
    ("losses.0.loss", "nonexistent", r"`losses\[0\].loss`: Unknown loss 'nonexistent'"),
    ("losses.0.loss", "focal(2)", r"`losses\[0\].loss`: Malformed loss spec 'focal\(2\)'"),
    ("losses.0.loss", "focal(gamma=-1)", r"`losses\[0\].loss`: focal\(gamma=-1\) is invalid"),
    ("losses.0.params", {"gamma": -1}, r"`losses\[0\].params.gamma`: ce\(gamma=-1\)"),
    ("noise.mapping", {"0": 1}, r"`noise.mapping`: only used with kind = 'asymmetric'"),
    (
        "losses.0.params",
        {"colour": 1},
        r"`losses\[0\].params.colour`: ce\(colour=1\) is invalid: Unknown arg",
    ),
    ("losses.0.sampler", "oversample", r"`losses\[0\].sampler`"),
    (
        "losses.0.class_weights",
        {"method": "effective_number", "beta": 1.0},
        r"weights.beta`: expected < 1",
    ),
    ("losses.0.class_weights", {"method": "median"}, r"`losses\[0\].class_weights.method`"),
    ("losses.0.label", "gce", r"`losses\[1\].label`: duplicate label"),
    ("losses.1.params", {"q": 0.5}, r"`losses\[1\].grid.q`: also given as a fixed parameter"),
    ("losses.0.colour", "red", r"`losses\[0\].colour`: unknown key"),
    ("extra", {}, r"`extra`: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD)
def test_invalid_configs_name_the_key_path(path, value, message):
    raw = _set(tiny_raw(), path, value)
    with pytest.raises(StudyConfigError, match=message) as info:
        parse_config(raw)
    assert info.value.path and info.value.reason


def test_asymmetric_noise_rejects_majority_rates():
    raw = tiny_raw(noise={"kind": "asymmetric", "rates": [0.2, 0.5]})
    with pytest.raises(
        StudyConfigError, match=r"`noise.rates`: asymmetric noise needs rates < 0.5"
    ):
        parse_config(raw)
    cfg = parse_config(tiny_raw(noise={"kind": "asymmetric", "rates": [0.3], "mapping": {"0": 1}}))
    assert expand(cfg)[0]["noise"]["mapping"] == {"0": 1}


def test_asymmetric_noise_takes_the_built_in_cifar10_mapping():
    noise = {"kind": "asymmetric", "rates": [0.0, 0.3], "mapping": "cifar10"}
    cfg = parse_config(tiny_raw(noise=noise))
    assert cfg.noise_mapping == "cifar10"
    runs = expand(cfg)
    assert {r["noise"]["mapping"] for r in runs if r["noise"]["rate"] > 0} == {"cifar10"}
    assert {r["noise"]["mapping"] for r in runs if r["noise"]["rate"] == 0} == {None}
    noise["mapping"] = "mnist"
    with pytest.raises(StudyConfigError, match=r"`noise.mapping`: expected one of 'cifar10'"):
        parse_config(tiny_raw(noise=noise))


def test_invalid_toml_and_file_name_default(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\n")
    with pytest.raises(StudyConfigError, match="is not valid TOML"):
        load_config(bad)
    good = tmp_path / "my_study.toml"
    good.write_text('[[losses]]\nloss = "ce"\n')
    cfg = load_config(good)
    assert cfg.name == "my_study" and cfg.source == str(good)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Expected `preset` to be one of"):
        load_preset("nope")


def test_loss_specs_and_multiclass_only():
    raw = tiny_raw(losses=[{"loss": "focal(gamma=2)"}, {"loss": "flsd-53"}])
    arms = parse_config(raw).losses
    assert [(a.name, a.params, a.label) for a in arms] == [
        ("focal", {"gamma": 2}, "focal(gamma=2)"),
        ("flsd-53", {}, "flsd-53"),
    ]
    with pytest.raises(StudyConfigError, match=r"`losses\[0\].loss`: 'bce' takes binary inputs"):
        parse_config(tiny_raw(losses=[{"loss": "bce"}]))


def test_format_loss_spec_round_trips():
    spec = format_loss_spec("sgce", {"q": 0.7, "smoothing": "others"})
    assert spec == "sgce(q=0.7, smoothing='others')"
    assert parse_spec(spec) == ("sgce", {"q": 0.7, "smoothing": "others"})
