"""Each module equals its function; bad hyper-parameters raise at construction and call."""

import math

import pytest
import torch

import crossent.nn as cnn
from crossent import functional as CF

W = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3])

# (module class, function, keyword arguments) for logits + class-index losses
MULTICLASS = [
    (cnn.FocalLoss, CF.focal_loss, {"gamma": 1.5, "alpha": [0.1, 0.2, 0.3, 0.2, 0.2]}),
    (cnn.FocalLoss, CF.focal_loss, {"gamma": "flsd-53", "weight": W, "label_smoothing": 0.1}),
    (cnn.GCELoss, CF.generalized_cross_entropy, {"q": 0.4, "truncate": 0.2, "reduction": "sum"}),
    (cnn.SGCELoss, CF.smooth_generalized_cross_entropy, {"q": 0.5, "label_smoothing": 0.2}),
    (cnn.MAELoss, CF.mae_loss, {"weight": W, "ignore_index": 1}),
    (cnn.UnhingedLoss, CF.unhinged_loss, {"reduction": "none"}),
    (cnn.RCELoss, CF.reverse_cross_entropy, {"A": -4.0}),
    (cnn.SCELoss, CF.symmetric_cross_entropy, {"alpha": 0.5, "beta": 0.5, "A": -2.0}),
    (cnn.NCELoss, CF.normalized_cross_entropy, {"reduction": "sum"}),
    (cnn.NFLoss, CF.normalized_focal_loss, {"gamma": 2.0}),
    (
        cnn.APLoss,
        CF.active_passive_loss,
        {"active": "nfl", "passive": "mae", "alpha": 2.0, "beta": 0.5, "gamma": 1.0},
    ),
    (cnn.Poly1CrossEntropyLoss, CF.poly1_cross_entropy, {"epsilon": -0.5}),
    (
        cnn.EntropyRegularizedCrossEntropyLoss,
        CF.entropy_regularized_cross_entropy,
        {"beta": 0.3, "smoothing": "others", "label_smoothing": 0.1},
    ),
    (cnn.BrierLoss, CF.brier_loss, {"weight": W}),
]
BINARY = [
    (cnn.SigmoidFocalLoss, CF.sigmoid_focal_loss, {"gamma": 0.5, "alpha": 0.4}),
    (cnn.BinaryGCELoss, CF.binary_generalized_cross_entropy, {"q": 0.3, "pos_weight": W}),
    (cnn.BinarySGCELoss, CF.binary_smooth_generalized_cross_entropy, {"smoothing": "uniform"}),
]


@pytest.mark.parametrize("cls,fn,kw", MULTICLASS)
def test_module_equals_function(cls, fn, kw):
    x = torch.randn(6, 5, requires_grad=True)
    t = torch.randint(0, 5, (6,))
    module = cls(**kw)
    got, want = module(x, t), fn(x, t, **kw)
    torch.testing.assert_close(got, want)
    (g1,) = torch.autograd.grad(got.sum(), x)
    (g2,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g2)
    assert repr(module).startswith(cls.__name__)


@pytest.mark.parametrize("cls,fn,kw", BINARY)
def test_binary_module_equals_function(cls, fn, kw):
    x = torch.randn(6, 5)
    y = torch.randint(0, 2, (6, 5)).float()
    torch.testing.assert_close(cls(**kw)(x, y), fn(x, y, **kw))


def test_tensors_are_buffers():
    m = cnn.FocalLoss(alpha=[0.25, 0.75], weight=torch.ones(2))
    assert set(dict(m.named_buffers())) == {"weight", "alpha"}
    assert m.alpha.dtype == torch.float32
    m = m.double()
    assert m.alpha.dtype == torch.float64 and m.weight.dtype == torch.float64
    assert "pos_weight" in dict(cnn.BinaryGCELoss(pos_weight=torch.ones(3)).named_buffers())


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        CF.focal_loss(torch.zeros(2, 3), torch.tensor([0, 1]), 2.0)
    with pytest.raises(TypeError):
        cnn.FocalLoss(2.0)
    with pytest.raises(TypeError):
        cnn.GCELoss(0.5)


def test_defaults():
    assert cnn.FocalLoss().gamma == 2.0 and cnn.FocalLoss().alpha is None
    assert cnn.SigmoidFocalLoss().alpha == 0.25 and cnn.SigmoidFocalLoss().reduction == "mean"
    assert cnn.GCELoss().q == 0.7 and cnn.GCELoss().truncate is None
    sgce = cnn.SGCELoss()
    assert (sgce.q, sgce.label_smoothing, sgce.smoothing) == (0.7, 0.1, "others")
    sce = cnn.SCELoss()
    assert (sce.alpha, sce.beta) == (0.1, 1.0) and sce.A == pytest.approx(math.log(1e-4))
    assert cnn.RCELoss().A == pytest.approx(-9.2103, abs=1e-4)
    apl = cnn.APLoss()
    assert (apl.active, apl.passive, apl.alpha, apl.beta) == ("nce", "rce", 1.0, 1.0)
    assert cnn.Poly1CrossEntropyLoss().epsilon == 1.0
    assert cnn.EntropyRegularizedCrossEntropyLoss().beta == 0.1
    d = cnn.DistillationLoss()
    assert (d.temperature, d.divergence, d.mix, d.alpha) == (1.0, "forward_kl", 0.5, 0.0)


X, T = torch.zeros(2, 3), torch.tensor([0, 1])
Y = torch.ones(2, 3)
BAD = [
    # (function, module class, kwargs, message regex)
    (CF.focal_loss, cnn.FocalLoss, {"gamma": -1.0}, r"`gamma` in \[0, inf\)"),
    (CF.focal_loss, cnn.FocalLoss, {"gamma": "flsd-99"}, "flsd-53"),
    (CF.focal_loss, cnn.FocalLoss, {"alpha": 0.25}, "per-class"),
    (CF.focal_loss, cnn.FocalLoss, {"alpha": [0.5, -0.5, 1.0]}, ">= 0"),
    (CF.focal_loss, cnn.FocalLoss, {"label_smoothing": 1.5}, "label_smoothing"),
    (CF.focal_loss, cnn.FocalLoss, {"reduction": "avg"}, "reduction"),
    (CF.sigmoid_focal_loss, cnn.SigmoidFocalLoss, {"alpha": 1.5}, r"`alpha` in \[0, 1\]"),
    (CF.sigmoid_focal_loss, cnn.SigmoidFocalLoss, {"gamma": -0.1}, "gamma"),
    (CF.generalized_cross_entropy, cnn.GCELoss, {"q": 1.5}, r"`q` in \[0, 1\]"),
    (CF.generalized_cross_entropy, cnn.GCELoss, {"q": -0.1}, r"`q` in \[0, 1\]"),
    (CF.generalized_cross_entropy, cnn.GCELoss, {"truncate": 1.0}, r"`truncate` in \(0, 1\)"),
    (CF.smooth_generalized_cross_entropy, cnn.SGCELoss, {"q": 2.0}, "`q`"),
    (CF.smooth_generalized_cross_entropy, cnn.SGCELoss, {"smoothing": "both"}, "smoothing"),
    (CF.binary_generalized_cross_entropy, cnn.BinaryGCELoss, {"q": 1.1}, "`q`"),
    (CF.binary_smooth_generalized_cross_entropy, cnn.BinarySGCELoss, {"q": -1}, "`q`"),
    (CF.reverse_cross_entropy, cnn.RCELoss, {"A": 0.0}, r"`A` in \(-inf, 0\)"),
    (CF.symmetric_cross_entropy, cnn.SCELoss, {"A": 1.0}, "`A`"),
    (CF.symmetric_cross_entropy, cnn.SCELoss, {"alpha": -0.1}, "`alpha`"),
    (CF.symmetric_cross_entropy, cnn.SCELoss, {"beta": -1.0}, "`beta`"),
    (CF.normalized_focal_loss, cnn.NFLoss, {"gamma": -2.0}, "`gamma`"),
    (CF.active_passive_loss, cnn.APLoss, {"active": "ce"}, "`active`"),
    (CF.active_passive_loss, cnn.APLoss, {"passive": "nce"}, "`passive`"),
    (CF.active_passive_loss, cnn.APLoss, {"alpha": -1.0}, "`alpha`"),
    (CF.active_passive_loss, cnn.APLoss, {"A": 0.5}, "`A`"),
    (CF.poly1_cross_entropy, cnn.Poly1CrossEntropyLoss, {"epsilon": -1.5}, r"`epsilon` in \[-1"),
    (
        CF.entropy_regularized_cross_entropy,
        cnn.EntropyRegularizedCrossEntropyLoss,
        {"beta": -0.1},
        "`beta`",
    ),
    (CF.distillation_loss, cnn.DistillationLoss, {"temperature": 0.0}, r"`temperature` in \(0"),
    (CF.distillation_loss, cnn.DistillationLoss, {"temperature": -1.0}, "`temperature`"),
    (CF.distillation_loss, cnn.DistillationLoss, {"mix": -0.5}, r"`mix` in \[0, 1\]"),
    (CF.distillation_loss, cnn.DistillationLoss, {"alpha": 2.0}, r"`alpha` in \[0, 1\]"),
    (CF.distillation_loss, cnn.DistillationLoss, {"divergence": "kl"}, "`divergence`"),
]


@pytest.mark.parametrize("fn,cls,kw,message", BAD)
def test_bad_hyperparameters_raise(fn, cls, kw, message):
    with pytest.raises(ValueError, match=message):
        fn(*_args(fn), **kw)
    with pytest.raises(ValueError, match=message):
        cls(**kw)


def _args(fn):
    if fn in (
        CF.sigmoid_focal_loss,
        CF.binary_generalized_cross_entropy,
        CF.binary_smooth_generalized_cross_entropy,
    ):
        return X, Y
    if fn is CF.distillation_loss:
        return X, X
    return X, T


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="real number"):
        CF.generalized_cross_entropy(X, T, q="0.5")
    with pytest.raises(TypeError, match="ignore_index"):
        cnn.MAELoss(ignore_index=1.5)
    with pytest.raises(TypeError, match="alpha"):
        cnn.FocalLoss(alpha={"a": 1})
