"""The loss registry: every name builds and computes; specs parse safely; bad settings raise."""

import re

import pytest
import torch

import crossent.nn
from crossent.registry import (
    KINDS,
    available_losses,
    get_loss,
    loss_class,
    loss_kind,
    parse_spec,
)

REQUIRED = [
    "ce", "bce", "nll", "focal", "sigmoid_focal", "gce", "binary_gce", "sgce", "binary_sgce",
    "mae", "unhinged", "rce", "sce", "nce", "nfl", "apl", "poly1", "erce", "brier", "asl",
    "distill",
    "dice", "tversky", "focal_tversky", "unified_focal",
]  # fmt: skip


def _inputs(kind, seed=0):
    """Random input of the kind a loss takes: ``(args, tensor that requires grad)``."""
    g = torch.Generator().manual_seed(seed)
    if kind == "multiclass":
        z = torch.randn(6, 5, generator=g).requires_grad_()
        return (z, torch.randint(0, 5, (6,), generator=g)), z
    if kind == "binary":
        z = torch.randn(6, 3, generator=g).requires_grad_()
        return (z, (torch.rand(6, 3, generator=g) < 0.5).float()), z
    if kind == "log_probs":
        z = torch.randn(6, 5, generator=g).requires_grad_()
        return (torch.log_softmax(z, 1), torch.randint(0, 5, (6,), generator=g)), z
    if kind == "distillation":
        z = torch.randn(6, 5, generator=g).requires_grad_()
        return (z, torch.randn(6, 5, generator=g)), z
    z = torch.randn(2, 3, 4, 4, generator=g).requires_grad_()
    return (z, torch.randint(0, 3, (2, 4, 4), generator=g)), z


def test_available_losses_lists_every_required_name_once():
    names = available_losses()
    assert names[: len(REQUIRED)] == REQUIRED or set(REQUIRED) <= set(names)
    assert len(names) == len(set(names))
    with_aliases = available_losses(include_aliases=True)
    assert set(names) < set(with_aliases)
    assert {"cross_entropy", "focal_loss", "flsd-53", "dice_loss"} <= set(with_aliases)


@pytest.mark.parametrize("name", REQUIRED)
def test_every_name_builds_with_defaults_and_computes(name):
    loss = get_loss(name)
    assert isinstance(loss, torch.nn.Module)
    assert type(loss) is loss_class(name)
    assert loss_kind(name) in KINDS
    args, z = _inputs(loss_kind(name))
    out = loss(*args)
    assert out.dim() == 0 and torch.isfinite(out)
    out.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_an_empty_batch_gives_zero_and_an_empty_gradient(name, reduction):
    # PyTorch gives NaN for the mean of nothing; crossent gives 0 (as for an all-ignored batch).
    args, z = _inputs(loss_kind(name))
    empty = tuple(a[:0].detach() for a in args)
    z0 = empty[0].requires_grad_() if loss_kind(name) != "log_probs" else z[:0]
    out = get_loss(name, reduction=reduction)(z0, *empty[1:])
    assert torch.count_nonzero(out) == 0 and torch.isfinite(out).all()
    (grad,) = torch.autograd.grad(out.sum(), z0 if z0.requires_grad else z, allow_unused=True)
    assert grad is None or torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("name", available_losses(include_aliases=True))
def test_every_alias_builds(name):
    args, _ = _inputs(loss_kind(name))
    assert torch.isfinite(get_loss(name)(*args))


@pytest.mark.parametrize(
    ("spec", "kwargs", "cls", "want"),
    [
        ("focal(gamma=2)", {}, "FocalLoss", {"gamma": 2.0}),
        ("focal(gamma='flsd-53')", {}, "FocalLoss", {"gamma": "flsd-53"}),
        ("flsd-53", {}, "FocalLoss", {"gamma": "flsd-53"}),
        ("focal(gamma=2)", {"gamma": 0.5}, "FocalLoss", {"gamma": 0.5}),
        ("focal", {"alpha": [0.5, 1, 1, 2, 1]}, "FocalLoss",
         {"alpha": torch.tensor([0.5, 1, 1, 2, 1])}),
        ("gce(q=0.7)", {}, "GCELoss", {"q": 0.7}),
        ("gce", {"q": 0.3}, "GCELoss", {"q": 0.3}),
        ("sgce", {}, "SGCELoss", {}),
        ("ce(label_smoothing=0.1, smoothing='others')", {}, "CrossEntropyLoss",
         {"label_smoothing": 0.1, "smoothing": "others"}),
        ("ce(weight=[1, 2, 0.5, 1, 1])", {}, "CrossEntropyLoss",
         {"weight": torch.tensor([1, 2, 0.5, 1, 1])}),
        ("rce(A=-4)", {}, "RCELoss", {"A": -4}),
        ("sce(alpha=0.1, beta=1.0, A=-9.21)", {}, "SCELoss",
         {"alpha": 0.1, "beta": 1.0, "A": -9.21}),
        ("apl(active='nfl', passive='mae')", {}, "APLoss", {"active": "nfl", "passive": "mae"}),
        ("distill(temperature=2, divergence='jsd')", {}, "DistillationLoss",
         {"temperature": 2, "divergence": "jsd"}),
        ("cross_entropy", {"label_smoothing": 0.2}, "CrossEntropyLoss", {"label_smoothing": 0.2}),
        ("jaccard", {}, "TverskyLoss", {"alpha": 1.0, "beta": 1.0}),
        ("  Focal( gamma = 1 ) ", {}, "FocalLoss", {"gamma": 1}),
    ],
)  # fmt: skip
def test_spec_builds_the_same_module_as_the_class(spec, kwargs, cls, want):
    """The spec's module computes what the class built with the same arguments computes."""
    loss = get_loss(spec, **kwargs)
    direct = getattr(crossent.nn, cls)(**want)
    assert type(loss) is type(direct)
    args, _ = _inputs(loss_kind(parse_spec(spec)[0]), seed=3)
    torch.testing.assert_close(loss(*args), direct(*args))


def test_spec_arguments_change_the_loss():
    args, _ = _inputs("multiclass")
    ce = get_loss("ce")(*args)
    torch.testing.assert_close(get_loss("focal(gamma=0)")(*args), ce)
    assert not torch.allclose(get_loss("focal(gamma=2)")(*args), ce)
    assert not torch.allclose(get_loss("ce(label_smoothing=0.3)")(*args), ce)


def test_parse_spec_literals():
    assert parse_spec("sgce") == ("sgce", {})
    assert parse_spec("gce(q=0.7)") == ("gce", {"q": 0.7})
    assert parse_spec("x(a=-1, b=+2.5, c=-1e-4, d=True, e=None, f='s', g=(1, -2), h=[])") == (
        "x",
        {"a": -1, "b": 2.5, "c": -1e-4, "d": True, "e": None, "f": "s", "g": [1, -2], "h": []},
    )
    assert parse_spec("flsd-53") == ("flsd-53", {})


@pytest.mark.parametrize(
    "spec",
    [
        "focal(",
        "focal(2)",
        "focal(gamma=x)",
        "focal(gamma=1+1)",
        "focal(gamma=-x)",
        "focal(**d)",
        "focal(gamma=[1, 'a'])",
        "focal(gamma={'a': 1})",
        "focal.gamma",
        "focal()()",
        "",
        "ce(label_smoothing=__import__('os').getpid())",
        "__import__('os').system('true')",
        "focal(gamma=1, gamma=2)",
        "lambda: 0",
    ],
)
def test_malformed_specs_raise_showing_the_spec(spec):
    with pytest.raises(ValueError, match=re.escape(repr(spec))):
        get_loss(spec)


def test_spec_must_be_a_string():
    with pytest.raises(TypeError, match="`spec` to be a string"):
        get_loss(torch.nn.CrossEntropyLoss)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown loss 'hinge'") as info:
        get_loss("hinge(margin=1)")
    for name in REQUIRED:
        assert name in str(info.value)


def test_unknown_keyword_is_named_with_the_accepted_ones():
    with pytest.raises(
        ValueError, match=r"Unknown argument `gamma` for loss 'ce'.*label_smoothing"
    ):
        get_loss("ce(gamma=2)")
    with pytest.raises(ValueError, match=r"Unknown argument `qq` for loss 'gce'.*\bq\b"):
        get_loss("gce", qq=0.5)


# (spec, exception, message regex): every name rejects settings outside their range, with the
# argument and its allowed range in the message.
INVALID = [
    ("ce(label_smoothing=1.5)", ValueError, r"`label_smoothing` in \[0, 1\]"),
    ("ce(smoothing='both')", ValueError, r"`smoothing` to be one of 'uniform', 'others'"),
    ("bce(label_smoothing=-0.1)", ValueError, r"`label_smoothing` in \[0, 1\]"),
    ("nll(reduction='avg')", ValueError, r"`reduction` to be one of 'none', 'mean', 'sum'"),
    ("focal(gamma=-1)", ValueError, r"`gamma`.*(>= 0|\[0, inf)"),
    ("focal(gamma='flsd-99')", ValueError, r"`gamma`.*flsd-53"),
    ("focal(alpha=0.25)", ValueError, r"`alpha`.*per-class"),
    ("sigmoid_focal(gamma=-0.5)", ValueError, r"`gamma`.*(>= 0|\[0, inf)"),
    ("sigmoid_focal(alpha=1.5)", ValueError, r"`alpha`.*\[0, 1\]"),
    ("gce(q=1.5)", ValueError, r"`q` in \[0, 1\]"),
    ("gce(q=-0.1)", ValueError, r"`q` in \[0, 1\]"),
    ("binary_gce(q=2)", ValueError, r"`q` in \[0, 1\]"),
    ("sgce(q=-1)", ValueError, r"`q` in \[0, 1\]"),
    ("sgce(label_smoothing=1.5)", ValueError, r"`label_smoothing` in \[0, 1\]"),
    ("binary_sgce(q=1.1)", ValueError, r"`q` in \[0, 1\]"),
    ("mae(reduction='avg')", ValueError, r"`reduction` to be one of"),
    ("unhinged(reduction='max')", ValueError, r"`reduction` to be one of"),
    ("rce(A=0)", ValueError, r"`A`.*(< 0|\(-inf, 0\))"),
    ("rce(A=1.5)", ValueError, r"`A`.*(< 0|\(-inf, 0\))"),
    ("sce(A=0)", ValueError, r"`A`.*(< 0|\(-inf, 0\))"),
    ("sce(alpha=-1)", ValueError, r"`alpha`.*(>= 0|\[0, inf)"),
    ("nce(reduction='avg')", ValueError, r"`reduction` to be one of"),
    ("nfl(gamma=-1)", ValueError, r"`gamma`.*(>= 0|\[0, inf)"),
    ("apl(active='ce')", ValueError, r"`active` to be one of 'nce', 'nfl'"),
    ("apl(passive='ce')", ValueError, r"`passive` to be one of 'rce', 'mae'"),
    ("apl(alpha=-1)", ValueError, r"`alpha`.*(>= 0|\[0, inf)"),
    ("poly1(reduction='avg')", ValueError, r"`reduction` to be one of"),
    ("erce(beta=-0.1)", ValueError, r"`beta`.*(>= 0|\[0, inf)"),
    ("brier(reduction='avg')", ValueError, r"`reduction` to be one of"),
    ("asl(gamma_neg=-1)", ValueError, r"`gamma_neg`.*\[0, inf\)"),
    ("asl(gamma_pos=-0.5)", ValueError, r"`gamma_pos`.*\[0, inf\)"),
    ("asl(clip=1.0)", ValueError, r"`clip` in \[0, 1\)"),
    ("distill(temperature=0)", ValueError, r"`temperature`.*(> 0|\(0, inf)"),
    ("distill(temperature=-2)", ValueError, r"`temperature`.*(> 0|\(0, inf)"),
    ("distill(mix=1.5)", ValueError, r"`mix` in \[0, 1\]"),
    ("distill(alpha=2)", ValueError, r"`alpha` in \[0, 1\]"),
    ("distill(divergence='kl')", ValueError, r"`divergence` to be one of 'forward_kl'"),
    ("dice(smooth=-1)", ValueError, r"`smooth` in \[0, inf\)"),
    ("dice(mode='sparse')", ValueError, r"`mode` to be one of 'multiclass', 'binary'"),
    ("tversky(alpha=-0.3)", ValueError, r"`alpha` in \[0, inf\)"),
    ("focal_tversky(gamma=-1)", ValueError, r"`gamma` in \[0, inf\)"),
    ("unified_focal(weight=1.5)", ValueError, r"`weight` in \[0, 1\]"),
    ("unified_focal(delta=-0.5)", ValueError, r"`delta` in \[0, 1\]"),
    ("unified_focal(gamma=2)", ValueError, r"`gamma` in \[0, 1\]"),
]


@pytest.mark.parametrize(("spec", "exc", "match"), INVALID)
def test_invalid_settings_raise_with_the_allowed_range(spec, exc, match):
    with pytest.raises(exc, match=match):
        get_loss(spec)


def test_every_name_has_invalid_settings_in_the_table():
    covered = {parse_spec(spec)[0] for spec, _, _ in INVALID}
    assert covered >= set(available_losses())


# Names whose module is one engine term (its function takes inplace_backward), and the rest.
IN_PLACE = ["ce", "focal", "gce", "sgce", "mae", "unhinged", "rce", "sce", "poly1", "erce", "brier"]


@pytest.mark.parametrize("name", IN_PLACE)
def test_inplace_backward_in_a_spec(name):
    module = get_loss(f"{name}(inplace_backward=True)")
    assert module.inplace_backward is True
    assert get_loss(name).inplace_backward is False
    (z, target), _ = _inputs("multiclass")
    base = z.detach().double().requires_grad_()
    logits = base * 1.0
    version = logits._version
    module(logits, target).backward()
    assert logits._version > version
    (want,) = torch.autograd.grad(get_loss(name)(base, target), base)
    torch.testing.assert_close(base.grad, want)
    torch.testing.assert_close(logits.detach(), want)


@pytest.mark.parametrize("name", sorted(set(REQUIRED) - set(IN_PLACE)))
def test_inplace_backward_is_refused_where_the_module_lacks_it(name):
    with pytest.raises(ValueError, match="Unknown argument `inplace_backward`"):
        get_loss(name, inplace_backward=True)
