"""``inplace_backward=True`` on every loss computed by one engine term, functions and modules.

The gradient goes into a new buffer by default and into the logits' storage with
``inplace_backward=True`` (issue #11): same loss, same gradient upstream, the logits' storage
holds the gradient afterwards and their version counter is bumped; a leaf is left alone.
"""

import pytest
import torch

import crossent
import crossent.nn as cnn
from crossent import functional as CF
from crossent.linear import linear_loss
from crossent.terms import FocalTerm

W = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64)

# (function, module class, hyper-parameters)
TERM_LOSSES = [
    (CF.focal_loss, cnn.FocalLoss, {"gamma": 2.0, "alpha": [0.1, 0.2, 0.3, 0.2, 0.2]}),
    (CF.focal_loss, cnn.FocalLoss, {"gamma": "flsd-53"}),
    (CF.generalized_cross_entropy, cnn.GCELoss, {"q": 0.7, "truncate": 0.1}),
    (CF.smooth_generalized_cross_entropy, cnn.SGCELoss, {"q": 0.5}),
    (CF.mae_loss, cnn.MAELoss, {}),
    (CF.unhinged_loss, cnn.UnhingedLoss, {}),
    (CF.reverse_cross_entropy, cnn.RCELoss, {"A": -4.0}),
    (CF.symmetric_cross_entropy, cnn.SCELoss, {"alpha": 0.5, "beta": 1.0}),
    (CF.poly1_cross_entropy, cnn.Poly1CrossEntropyLoss, {"epsilon": 2.0}),
    (CF.entropy_regularized_cross_entropy, cnn.EntropyRegularizedCrossEntropyLoss, {"beta": 0.3}),
    (CF.brier_loss, cnn.BrierLoss, {}),
]
IDS = [f"{fn.__name__}-{i}" for i, (fn, _, _) in enumerate(TERM_LOSSES)]
FUNCTIONS = [(fn, kw) for fn, _, kw in TERM_LOSSES]
MODULES = [(cls, kw) for _, cls, kw in TERM_LOSSES]
NORMALIZED = [
    (CF.normalized_cross_entropy, cnn.NCELoss),
    (CF.normalized_focal_loss, cnn.NFLoss),
    (CF.active_passive_loss, cnn.APLoss),
]


def _data(shape=(6, 5), seed=0, soft=False):
    g = torch.Generator().manual_seed(seed)
    base = (2.0 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()
    k = shape[1]
    if soft:
        target = torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1)
    else:
        target = torch.randint(0, k, (shape[0], *shape[2:]), generator=g)
        target[0] = -100 if target.dim() == 1 else target[0]  # one ignored row
    return base, target


def _grad_output(loss, seed=3):
    if loss.dim() == 0:
        return torch.ones_like(loss)
    g = torch.Generator().manual_seed(seed)
    return torch.rand(loss.shape, generator=g, dtype=loss.dtype) + 0.5


def _check_in_place(loss_fn, base, target):
    """Default vs ``inplace_backward=True`` through ``loss_fn(logits, target, inplace)``."""
    ref_logits = base * 1.0
    ref_logits.retain_grad()
    ref = loss_fn(ref_logits, target, False)
    ref.backward(_grad_output(ref))
    assert torch.equal(ref_logits.detach(), base.detach())  # default: logits untouched
    ref_base_grad, base.grad = base.grad, None

    logits = base * 1.0
    ptr, version = logits.data_ptr(), logits._version
    loss = loss_fn(logits, target, True)
    assert logits._version > version  # bumped: an operation that saved them fails loudly
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-14)
    loss.backward(_grad_output(loss))
    torch.testing.assert_close(base.grad, ref_base_grad, rtol=1e-12, atol=1e-14)
    assert logits.data_ptr() == ptr
    torch.testing.assert_close(logits.detach(), ref_logits.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("fn,kw", FUNCTIONS, ids=IDS)
def test_function_in_place(fn, kw, reduction, label_smoothing):
    base, target = _data()

    def loss_fn(z, t, inplace):
        return fn(
            z,
            t,
            **kw,
            weight=W,
            reduction=reduction,
            label_smoothing=label_smoothing,
            inplace_backward=inplace,
        )

    _check_in_place(loss_fn, base, target)


@pytest.mark.parametrize("fn,kw", FUNCTIONS, ids=IDS)
def test_function_in_place_soft_targets_and_dense_shape(fn, kw):
    base, target = _data(shape=(3, 5, 2, 2), soft=True)
    smoothing = {"smoothing": "uniform"} if fn is CF.smooth_generalized_cross_entropy else {}

    def loss_fn(z, t, inplace):
        return fn(z, t, **kw, **smoothing, reduction="none", inplace_backward=inplace)

    _check_in_place(loss_fn, base, target)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("cls,kw", MODULES, ids=IDS)
def test_module_in_place(cls, kw, reduction):
    base, target = _data()
    modules = {
        flag: cls(**kw, label_smoothing=0.1, reduction=reduction, inplace_backward=flag)
        for flag in (False, True)
    }
    assert modules[True].inplace_backward and not modules[False].inplace_backward
    assert "inplace_backward=True" in repr(modules[True])
    assert "inplace_backward" not in repr(modules[False])
    _check_in_place(lambda z, t, inplace: modules[inplace](z, t), base, target)


@pytest.mark.parametrize("fn,kw", FUNCTIONS, ids=IDS)
def test_leaf_is_left_unchanged(fn, kw):
    base, target = _data()
    before = base.detach().clone()
    version = base._version
    loss = fn(base, target, **kw, inplace_backward=True)
    assert torch.equal(base.detach(), before) and base._version == version
    (want,) = torch.autograd.grad(fn(base, target, **kw), base)
    loss.backward()
    assert torch.equal(base.detach(), before)
    assert base.grad.data_ptr() != base.data_ptr()
    torch.testing.assert_close(base.grad, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls,kw", MODULES, ids=IDS)
def test_module_leaf_is_left_unchanged(cls, kw):
    base, target = _data()
    before = base.detach().clone()
    cls(**kw, inplace_backward=True)(base, target).backward()
    assert torch.equal(base.detach(), before) and base.grad is not None


def test_operation_that_saved_the_logits_fails_loudly():
    base, target = _data()
    logits = base.exp()  # exp saves its result for backward
    loss = CF.focal_loss(logits, target, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("fn,kw", FUNCTIONS, ids=IDS)
def test_default_is_false_and_keyword_only(fn, kw):
    import inspect

    param = inspect.signature(fn).parameters["inplace_backward"]
    assert param.default is False and param.kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(fn).parameters)[-1] == "inplace_backward"


@pytest.mark.parametrize("fn,cls", NORMALIZED)
def test_normalized_losses_do_not_take_it(fn, cls):
    base, target = _data()
    with pytest.raises(TypeError):
        fn(base * 1.0, target, inplace_backward=True)
    with pytest.raises(TypeError):
        cls(inplace_backward=True)
    assert "inplace_backward" not in cls().common()
    cls()(base * 1.0, target).backward()  # the module still works


@pytest.mark.parametrize("name", ["focal", "gce", "sgce", "mae", "poly1", "brier", "ce"])
def test_linear_loss_accepts_and_ignores_it(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, 4, 1, 1, 2])
    want = linear_loss(x, w, t, name, chunk_size=4)
    got = linear_loss(x, w, t, name, chunk_size=4, inplace_backward=True)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got, (x, w))
    for a, b in zip(grads, torch.autograd.grad(want, (x, w)), strict=True):
        torch.testing.assert_close(a, b)
    term = linear_loss(x, w, t, FocalTerm(2.0), chunk_size=4, inplace_backward=True)
    torch.testing.assert_close(term, linear_loss(x, w, t, "focal", chunk_size=4))
    with pytest.raises(ValueError, match="inplace_backward"):
        linear_loss(x, w, t, "nce", inplace_backward=True)


def test_top_level_functions_take_it():
    base, target = _data()
    for name in ("focal_loss", "generalized_cross_entropy", "brier_loss", "mae_loss"):
        getattr(crossent, name)(base * 1.0, target, inplace_backward=True).backward()
