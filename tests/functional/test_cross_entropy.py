"""cross_entropy against PyTorch (whole argument grid) and the float64 reference."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import crossent
from tests import reference

SHAPES = [((6, 5), (6,)), ((3, 5, 4, 2), (3, 4, 2)), ((2, 3, 7), (2, 7)), ((5,), ())]
GRID = list(
    itertools.product(
        SHAPES, [None, "w"], [-100, 1], [0.0, 0.3], ["none", "mean", "sum"], ["index", "probs"]
    )
)


def _inputs(shape, tshape, kind, ignore_index, dtype=torch.float64):
    k = shape[0] if len(shape) == 1 else shape[1]
    x = (3 * torch.randn(*shape, dtype=dtype)).requires_grad_()
    if kind == "index":
        t = torch.randint(0, k, tshape)
        if t.dim() > 0:
            t.view(-1)[0] = ignore_index if ignore_index >= 0 else -100
        elif int(t) == ignore_index:  # a lone element that is ignored: see test_all_ignored
            t = torch.tensor((ignore_index + 1) % k)
    else:
        t = torch.softmax(torch.randn(*shape, dtype=dtype), dim=0 if len(shape) == 1 else 1)
    return x, t, k


@pytest.mark.parametrize("shapes,weight,ignore_index,eps,reduction,kind", GRID)
def test_matches_pytorch_float64(shapes, weight, ignore_index, eps, reduction, kind):
    shape, tshape = shapes
    x, t, k = _inputs(shape, tshape, kind, ignore_index)
    w = torch.rand(k, dtype=torch.float64) + 0.1 if weight else None
    kwargs = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    if kind == "probs" and ignore_index != -100:
        with pytest.raises(RuntimeError, match="ignore_index"):
            F.cross_entropy(x, t, **kwargs)
        with pytest.raises(ValueError, match="ignore_index"):
            crossent.cross_entropy(x, t, **kwargs)
        return
    ours = crossent.cross_entropy(x, t, **kwargs)
    theirs = F.cross_entropy(x, t, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_matches_pytorch_float32_odd_shape(eps, kind, reduction):
    x, t, k = _inputs((3, 423, 10), (3, 10), kind, -100, dtype=torch.float32)
    w = torch.rand(423) + 0.5
    ours = crossent.cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction)
    theirs = F.cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    (g1,) = torch.autograd.grad(ours.sum(), x)
    (g2,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)


def test_large_k_many_chunks_matches_pytorch(monkeypatch):
    from crossent.engine import multiclass as engine

    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1000)  # many chunks, and K > chunk
    for shape, tshape in [((37, 300), (37,)), ((2, 1500, 3), (2, 3))]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        t = torch.randint(0, shape[1], tshape)
        for eps in (0.0, 0.2):
            a = crossent.cross_entropy(x, t, label_smoothing=eps)
            b = F.cross_entropy(x, t, label_smoothing=eps)
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0])


@pytest.mark.parametrize("smoothing", ["uniform", "others"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
def test_against_float64_reference(smoothing, weighted, z_loss):
    x = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 6, (7,))
    t[2] = -100
    w = torch.rand(6, dtype=torch.float64) + 0.2 if weighted else None
    kw = dict(weight=w, label_smoothing=0.25, smoothing=smoothing, z_loss=z_loss)
    ours = crossent.cross_entropy(x, t, **kw)
    ref = reference.cross_entropy(x, t, **kw)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, x)[0], torch.autograd.grad(ref, x)[0])


@pytest.mark.parametrize("smoothing", ["uniform", "others"])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_gradcheck(smoothing, kind):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    if kind == "probs":
        if smoothing == "others":
            pytest.skip("'others' smoothing is not defined for probability targets")
        t = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1)
    else:
        t = torch.tensor([0, 3, -100, 4])
    w = torch.rand(5, dtype=torch.float64) + 0.1

    def fn(x):
        return crossent.cross_entropy(
            x, t, weight=w, label_smoothing=0.2, smoothing=smoothing, z_loss=0.01
        )

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize(
    "p_true,expected", [(0.7, 0.357), (0.05, 2.996), (0.01, 4.605), (0.5, math.log(2))]
)
def test_worked_numbers(p_true, expected):
    probs = torch.tensor([[p_true, 1 - p_true]])
    loss = crossent.cross_entropy(torch.log(probs), torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, abs=5e-4)


def test_min_achievable_and_chance():
    assert crossent.min_achievable_loss(10, 0.1, "others") == pytest.approx(0.5448, abs=5e-5)
    assert crossent.min_achievable_loss(10, 0.1, "uniform") == pytest.approx(0.5003, abs=5e-5)
    assert crossent.min_achievable_loss(10, 0.0) == 0.0
    assert crossent.chance_loss(10) == pytest.approx(math.log(10))
    assert crossent.chance_loss(1) == 0.0
    ref = reference.entropy([0.9] + [0.1 / 9] * 9)
    assert crossent.min_achievable_loss(10, 0.1, "others") == pytest.approx(ref)


@pytest.mark.parametrize("smoothing", ["uniform", "others"])
def test_min_achievable_is_the_minimum(smoothing):
    """The loss at logits = log of the smoothed target equals the minimum; others are larger."""
    k, eps = 6, 0.3
    on = 1 - eps if smoothing == "others" else 1 - eps + eps / k
    off = eps / (k - 1) if smoothing == "others" else eps / k
    p = torch.full((1, k), off, dtype=torch.float64)
    p[0, 2] = on
    t = torch.tensor([2])
    at_min = crossent.cross_entropy(p.log(), t, label_smoothing=eps, smoothing=smoothing)
    assert at_min.item() == pytest.approx(crossent.min_achievable_loss(k, eps, smoothing))
    other = crossent.cross_entropy(
        p.log() + torch.randn(1, k, dtype=torch.float64),
        t,
        label_smoothing=eps,
        smoothing=smoothing,
    )
    assert other.item() > at_min.item()


def test_gradient_is_softmax_minus_target():
    x = torch.randn(5, 7, requires_grad=True)
    t = torch.randint(0, 7, (5,))
    crossent.cross_entropy(x, t, reduction="sum").backward()
    torch.testing.assert_close(x.grad, torch.softmax(x.detach(), 1) - F.one_hot(t, 7).float())


def test_unbatched_input():
    x = torch.randn(5, requires_grad=True)
    t = torch.tensor(3)
    torch.testing.assert_close(crossent.cross_entropy(x, t), F.cross_entropy(x, t))
    assert crossent.cross_entropy(x, t, reduction="none").shape == ()


def test_module_equals_function():
    x = torch.randn(4, 6, 3)
    t = torch.randint(0, 6, (4, 3))
    w = torch.rand(6)
    module = crossent.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, smoothing="others")
    expected = crossent.cross_entropy(x, t, weight=w, label_smoothing=0.1, smoothing="others")
    torch.testing.assert_close(module(x, t), expected)
    assert "weight" in dict(module.named_buffers())


def test_k_equal_one():
    x = torch.randn(4, 1, requires_grad=True)
    t = torch.zeros(4, dtype=torch.long)
    loss = crossent.cross_entropy(x, t)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_zero_size_spatial_dim_gives_zero_and_empty_gradient(soft, reduction):
    x = torch.randn(2, 4, 0, requires_grad=True)
    t = torch.rand(2, 4, 0) if soft else torch.zeros(2, 0, dtype=torch.long)
    loss = crossent.cross_entropy(x, t, reduction=reduction)
    assert loss.shape == ((2, 0) if reduction == "none" else ())
    if reduction != "none":
        assert loss.item() == 0.0  # PyTorch: nan for mean (the documented all-ignored rule)
    loss.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_zero_classes_with_every_target_ignored_gives_zeros(name, reduction):
    # C = 0 returned uninitialised memory (cross_entropy) or raised (nll_loss); PyTorch: 0
    fn = getattr(crossent, name)
    x = torch.randn(3, 0, requires_grad=True)
    t = torch.full((3,), -100)
    loss = fn(x, t, reduction=reduction)
    expected = torch.zeros(3) if reduction == "none" else torch.tensor(0.0)
    assert torch.equal(loss.detach(), expected)  # PyTorch: nan for mean (all ignored)
    if reduction != "mean":
        torch.testing.assert_close(loss, getattr(F, name)(x, t, reduction=reduction))
    loss.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["focal", "gce", "mae", "rce", "sce", "poly1", "erce", "brier"])
def test_registry_losses_with_zero_classes_give_zeros(name):
    x = torch.randn(3, 0, requires_grad=True)
    loss = crossent.get_loss(name, reduction="none")(x, torch.full((3,), -100))
    assert torch.equal(loss.detach(), torch.zeros(3))
    loss.sum().backward()
    assert x.grad.shape == x.shape


def test_distillation_with_zero_classes_gives_zeros():
    x = torch.randn(3, 0, requires_grad=True)
    loss = crossent.distillation_loss(x, torch.randn(3, 0), reduction="none")
    assert torch.equal(loss.detach(), torch.zeros(3))


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("target", [[0, 0], [-100, -100]])
def test_mean_over_zero_weight_gives_zero_gradients_to_a_weight_that_requires_grad(name, target):
    # every kept target weighs 0 (or none is kept): loss 0 and gradients 0, not 0 * inf = nan
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    loss = getattr(crossent, name)(x, torch.tensor(target), weight=w)
    assert loss.item() == 0.0
    gx, gw = torch.autograd.grad(loss, (x, w))
    assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gw, torch.zeros_like(w))


def test_probability_targets_accept_a_negative_ignore_index_as_pytorch():
    x = torch.randn(3, 4, dtype=torch.float64)
    p = torch.softmax(torch.randn(3, 4, dtype=torch.float64), 1)
    for ignore_index in (-1, -5):
        torch.testing.assert_close(
            crossent.cross_entropy(x, p, ignore_index=ignore_index),
            F.cross_entropy(x, p, ignore_index=ignore_index),
        )
    with pytest.raises(ValueError, match="`ignore_index`.*probability targets"):
        crossent.cross_entropy(x, p, ignore_index=0)


def test_ignore_index_may_be_any_integer_type():
    np = pytest.importorskip("numpy", reason="NumPy integers are one of the accepted types")
    x = torch.randn(4, 5, dtype=torch.float64)
    t = torch.tensor([0, 2, 2, 4])
    want = F.cross_entropy(x, t, ignore_index=2)
    for ignore_index in (np.int64(2), torch.tensor(2)):
        torch.testing.assert_close(crossent.cross_entropy(x, t, ignore_index=ignore_index), want)
    with pytest.raises(TypeError, match="`ignore_index`"):
        crossent.cross_entropy(x, t, ignore_index=True)
