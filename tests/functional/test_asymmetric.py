"""The asymmetric loss (ASL, Ridnik et al. 2021) against its paper formula and the authors' code."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import crossent
from crossent import asymmetric_loss
from crossent.nn import AsymmetricLoss


def reference(z, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, weight=None, reduction="mean"):
    """The paper's formula, per element, in float64 from ``p = sigmoid(z)``."""
    p = 1 / (1 + torch.exp(-z.double()))
    p_m = torch.clamp(p - clip, min=0)
    y = y.double()
    loss = -(y * (1 - p) ** gamma_pos * torch.log(p))
    loss = loss - (1 - y) * p_m**gamma_neg * torch.log(1 - p_m)
    if weight is not None:
        loss = loss * weight.double()
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def authors_code(x, y, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8):
    """``AsymmetricLoss.forward`` of github.com/Alibaba-MIIL/ASL (src/loss_functions/losses.py),
    transliterated: a sum over elements, probabilities clamped at ``eps``; the focusing weight
    is kept in the graph (their ``disable_torch_grad_focal_loss=False``)."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, one_sided_gamma)
    return -loss.sum()


def data(n=8, c=5, seed=0, soft=False):
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, c, generator=g, dtype=torch.float64)
    y = torch.rand(n, c, generator=g, dtype=torch.float64)
    return z, (y if soft else (y < 0.3).double())


SETTINGS = [
    dict(),
    dict(gamma_pos=1.0, gamma_neg=4.0, clip=0.05),
    dict(gamma_pos=0.5, gamma_neg=0.5, clip=0.2),
    dict(gamma_pos=2.0, gamma_neg=0.0, clip=0.0),
    dict(gamma_pos=0.0, gamma_neg=3.0, clip=0.6),
]


@pytest.mark.parametrize("kw", SETTINGS, ids=str)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_the_paper_formula_in_float64_with_gradients(kw, soft, reduction):
    z, y = data(soft=soft)
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    x, xr = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = asymmetric_loss(x, y, weight=weight, reduction=reduction, **kw)
    want = reference(xr, y, weight=weight, reduction=reduction, **kw)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(got.sum(), x)
    (gr,) = torch.autograd.grad(want.sum(), xr)
    torch.testing.assert_close(g, gr, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gamma_pos", [0, 1])
def test_matches_the_authors_code_on_hard_labels(gamma_pos):
    z, y = data(n=16, c=6, seed=3)
    x, xr = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = asymmetric_loss(x, y, gamma_pos=gamma_pos, reduction="sum")
    want = authors_code(xr, y, gamma_pos=gamma_pos)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    got.backward()
    want.backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-7, atol=1e-9)


def test_gradcheck_away_from_the_clip():
    z, y = data(n=4, c=3, seed=5, soft=True)
    p = torch.sigmoid(z)
    assert bool(((p - 0.05).abs() > 1e-3).all())  # no kink at p = clip inside the stencil
    x = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: asymmetric_loss(t, y, gamma_pos=1.0), (x,))
    assert torch.autograd.gradgradcheck(lambda t: asymmetric_loss(t, y, gamma_pos=1.0), (x,))


def test_identities_with_the_sigmoid_focal_loss_and_bce():
    z, y = data(soft=True)
    for g in (0.0, 0.5, 2.0):
        torch.testing.assert_close(
            asymmetric_loss(z, y, gamma_pos=g, gamma_neg=g, clip=0.0),
            crossent.sigmoid_focal_loss(z, y, gamma=g, alpha=None),
        )
    torch.testing.assert_close(
        asymmetric_loss(z, y, gamma_pos=0, gamma_neg=0, clip=0),
        crossent.binary_cross_entropy_with_logits(z, y),
    )


def test_easy_negatives_below_the_clip_contribute_nothing():
    # p = sigmoid(z) = 0.04 < clip: the negative's shifted probability is 0
    z = torch.full((3,), math.log(0.04 / 0.96), dtype=torch.float64, requires_grad=True)
    loss = asymmetric_loss(z, torch.zeros(3, dtype=torch.float64), reduction="sum")
    (g,) = torch.autograd.grad(loss, z)
    assert float(loss.detach()) == 0.0 and bool((g == 0).all())


def test_worked_number_of_one_negative():
    # p = 0.7, clip 0.05: p_m = 0.65, loss = -0.65^4 log(0.35) = 0.1874
    z = torch.tensor([math.log(0.7 / 0.3)], dtype=torch.float64)
    loss = asymmetric_loss(z, torch.zeros(1, dtype=torch.float64))
    assert abs(float(loss) - 0.65**4 * -math.log(0.35)) < 1e-12
    assert round(float(loss), 4) == 0.1874


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_stay_finite(dtype):
    big = 1e4 if dtype == torch.float32 else 6e4 if dtype == torch.float16 else 1e30
    z = torch.tensor([[big, -big, 0.0, big, -big]], dtype=dtype, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    loss = asymmetric_loss(z, y, gamma_pos=0.5)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert z.grad.dtype == dtype and bool(torch.isfinite(z.grad).all())
    # the float64 loss of the same logits (the naive formula overflows to log 0 there)
    want = asymmetric_loss(z.detach().double(), y.double(), gamma_pos=0.5)
    torch.testing.assert_close(loss.double(), want, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("gamma_pos", [0.0, 1.0])
def test_infinite_logits_give_the_limits_and_leave_the_other_elements_alone(gamma_pos):
    # Hard labels pick each element's term; a block with an infinite logit takes a select
    # instead of the exact lerp, so the finite elements must not change with it.
    inf = math.inf
    z = torch.tensor([[inf, -inf, inf, -inf, 0.3, -1.2]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    z.requires_grad_()
    losses = asymmetric_loss(z, y, gamma_pos=gamma_pos, reduction="none")
    (grad,) = torch.autograd.grad(losses.sum(), z)
    p_m = 1 - 0.05  # p = 1 for z = inf: the shifted probability of the negative
    want = [-(p_m**4) * math.log(1 - p_m), 0.0, 0.0, inf]
    torch.testing.assert_close(losses[0, :4].detach(), torch.tensor(want, dtype=torch.float64))
    assert bool((grad[0, :3] == 0).all())
    finite_z = z.detach()[:, 4:].clone().requires_grad_()
    finite = asymmetric_loss(finite_z, y[:, 4:], gamma_pos=gamma_pos, reduction="none")
    (finite_grad,) = torch.autograd.grad(finite.sum(), finite_z)
    assert torch.equal(losses[:, 4:].detach(), finite.detach())
    assert torch.equal(grad[:, 4:], finite_grad)
    want_finite = reference(finite_z.detach(), y[:, 4:], gamma_pos, reduction="none")
    torch.testing.assert_close(finite.detach(), want_finite)


def test_module_equals_the_function_and_the_registry_builds_it():
    z, y = data()
    weight = torch.rand(5, dtype=torch.float64)
    module = AsymmetricLoss(gamma_pos=1.0, gamma_neg=2.0, clip=0.1, weight=weight)
    want = asymmetric_loss(z, y, gamma_pos=1.0, gamma_neg=2.0, clip=0.1, weight=weight)
    torch.testing.assert_close(module(z, y), want)
    built = crossent.get_loss("asl(gamma_pos=1.0, gamma_neg=2.0, clip=0.1)", weight=weight)
    torch.testing.assert_close(built(z, y), want)
    assert "weight" in dict(module.named_buffers())


def test_linear_loss_matches_the_unfused_loss():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(7, 3, generator=g) < 0.4).double()
    got = crossent.linear_loss(x, w, y, loss="asl(gamma_pos=1.0)", chunk_size=3)
    want = asymmetric_loss(x @ w.T, y, gamma_pos=1.0)
    torch.testing.assert_close(got, want)
    gx, gw = torch.autograd.grad(got, (x, w))
    wx, ww = torch.autograd.grad(want, (x, w))
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gw, ww)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(gamma_neg=-1.0), r"`gamma_neg` in \[0, inf\), but got -1.0"),
        (dict(gamma_pos=float("nan")), r"`gamma_pos` to be a finite number"),
        (dict(clip=1.0), r"`clip` in \[0, 1\), but got 1.0"),
        (dict(clip=-0.1), r"`clip` in \[0, 1\), but got -0.1"),
        (dict(reduction="avg"), r"`reduction` to be one of"),
    ],
)
def test_bad_settings_name_the_argument_and_the_value(kw, match):
    z, y = data()
    with pytest.raises(ValueError, match=match):
        asymmetric_loss(z, y, **kw)
    if "reduction" not in kw:
        with pytest.raises(ValueError, match=match):
            AsymmetricLoss(**kw)


def test_bad_targets_are_refused():
    z, y = data()
    with pytest.raises(ValueError, match=r"`target` to have the shape of `input`"):
        asymmetric_loss(z, y[:, :2])
    with pytest.raises(ValueError, match=r"`target` to hold values in \[0, 1\]"):
        asymmetric_loss(z, y + 1)


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float64, (3, 4), elements=st.floats(-12, 12)),
    y=arrays(np.float64, (3, 4), elements=st.floats(0, 1)),
    gamma_pos=st.sampled_from([0.0, 0.5, 1.0]),
    gamma_neg=st.sampled_from([0.0, 0.7, 4.0]),
    clip=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_gradient_is_the_finite_difference(x, y, gamma_pos, gamma_neg, clip):
    z, t = torch.from_numpy(x), torch.from_numpy(y)
    assume(bool(((torch.sigmoid(z) - clip).abs() > 1e-4).all()))  # away from the kink
    kw = dict(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction="none")
    zr = z.clone().requires_grad_()
    (g,) = torch.autograd.grad(asymmetric_loss(zr, t, **kw).sum(), zr)
    h = 1e-6
    fd = (asymmetric_loss(z + h, t, **kw) - asymmetric_loss(z - h, t, **kw)) / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-6)
    assert bool((asymmetric_loss(z, t, **kw) >= 0).all())
