"""Softmax and sigmoid focal loss: reference, identities, worked numbers, numerics."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import crossent.nn
from crossent.functional import cross_entropy, focal_loss, sigmoid_focal_loss
from tests import reference
from tests.functional.helpers import assert_matches, inputs, soft_targets

GRID = [
    (gamma, weight, alpha, eps, smoothing, ["mean", "sum", "none"][i % 3])
    for i, (gamma, weight, alpha, (eps, smoothing)) in enumerate(
        itertools.product(
            [0.0, 0.5, 2.0, "flsd-53"],
            [None, "w"],
            [None, "alpha"],
            [(0.0, "uniform"), (0.2, "uniform"), (0.2, "others")],
        )
    )
]


@pytest.mark.parametrize("gamma,weight,alpha,eps,smoothing,reduction", GRID)
def test_focal_matches_reference(gamma, weight, alpha, eps, smoothing, reduction):
    x, t = inputs(ignore_index=-100)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64) if weight else None
    a = torch.tensor([0.25, 0.75, 1.0, 0.5, 2.0], dtype=torch.float64) if alpha else None
    kw = dict(reduction=reduction, label_smoothing=eps, smoothing=smoothing)

    def ours(z):
        return focal_loss(z, t, gamma=gamma, alpha=a, weight=w, **kw)

    def ref(z):
        return reference.per_class_loss(
            z, t, reference.focal_elem(gamma), weight=w, class_scale=a, **kw
        )

    assert_matches(ours, ref, x)


@pytest.mark.parametrize("gamma", [0.0, 1.5, "flsd-53"])
def test_focal_probability_targets(gamma):
    x, _ = inputs()
    p = soft_targets()
    assert_matches(
        lambda z: focal_loss(z, p, gamma=gamma, label_smoothing=0.1),
        lambda z: reference.per_class_loss(z, p, reference.focal_elem(gamma), label_smoothing=0.1),
        x,
    )


def test_focal_kdim_equals_flattened_rows():
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (3, 5, 2))
    t[0, 0, 0] = -100
    flat_x = x.movedim(1, -1).reshape(-1, 4)
    assert_matches(
        lambda z: focal_loss(z, t, gamma=2.0),
        lambda z: reference.per_class_loss(
            z.movedim(1, -1).reshape(-1, 4), t.reshape(-1), reference.focal_elem(2.0)
        ),
        x,
    )
    assert flat_x.shape == (30, 4)


@pytest.mark.parametrize("weight", [None, torch.tensor([0.2, 1.0, 3.0, 0.5, 1.0])])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gamma_zero_is_cross_entropy(weight, eps):
    x, t = inputs(dtype=torch.float32, ignore_index=-100)
    got = focal_loss(x, t, gamma=0.0, weight=weight, label_smoothing=eps)
    want = F.cross_entropy(x, t, weight=weight, label_smoothing=eps)
    torch.testing.assert_close(got, want)
    (g1,) = torch.autograd.grad(got, x)
    (g2,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(
    "p_t,ce,focal", [(0.9, 0.105, 0.00105), (0.5, 0.693, 0.173), (0.1, 2.303, 1.865)]
)
def test_worked_numbers(p_t, ce, focal):
    # Two classes with probabilities (p_t, 1 - p_t), target class 0.
    x = torch.log(torch.tensor([[p_t, 1 - p_t]], dtype=torch.float64))
    t = torch.tensor([0])
    # the literals are the article's, rounded to the digits printed
    assert round(cross_entropy(x, t).item(), 3) == ce
    assert round(focal_loss(x, t, gamma=2.0).item(), 5 if p_t == 0.9 else 3) == focal


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_article_snippet_equals_focal_loss(gamma):
    x, t = inputs(n=16, k=6, dtype=torch.float32)
    snippet = reference.focal_snippet(x, t, gamma)
    torch.testing.assert_close(focal_loss(x, t, gamma=gamma), snippet, rtol=1e-5, atol=1e-6)
    (g1,) = torch.autograd.grad(focal_loss(x, t, gamma=gamma), x)
    (g2,) = torch.autograd.grad(snippet, x)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_flsd53_schedule_switches_at_p_0_2():
    # p_t = 0.19 uses gamma 5, p_t = 0.21 and 0.9 use gamma 3.
    for p_t, g in [(0.19, 5), (0.21, 3), (0.9, 3)]:
        x = torch.log(torch.tensor([[p_t, 1 - p_t]], dtype=torch.float64))
        got = focal_loss(x, torch.tensor([0]), gamma="flsd-53").item()
        assert got == pytest.approx(-((1 - p_t) ** g) * math.log(p_t), rel=1e-12)


def test_alpha_is_a_plain_mean_weight_is_pytorchs():
    x, t = inputs(ignore_index=-100)
    a = torch.tensor([0.25, 0.75, 1.0, 0.5, 2.0], dtype=torch.float64)
    per = focal_loss(x, t, alpha=a, reduction="none")
    assert focal_loss(x, t, alpha=a).item() == pytest.approx(per.sum().item() / 6)
    wper = focal_loss(x, t, weight=a, reduction="none")
    denom = a[t[1:]].sum().item()
    assert focal_loss(x, t, weight=a).item() == pytest.approx(wper.sum().item() / denom)
    torch.testing.assert_close(per, wper)


def test_alpha_sequence_keeps_float64_precision():
    x, t = inputs()
    values = [0.1, 0.7, 1.3, 0.3, 2.9]  # not representable in float32
    as_list = focal_loss(x, t, alpha=values, reduction="none")
    as_tensor = focal_loss(x, t, alpha=torch.tensor(values, dtype=torch.float64), reduction="none")
    assert torch.equal(as_list, as_tensor)


def test_float_alpha_raises_asking_for_per_class_values():
    x, t = inputs()
    with pytest.raises(ValueError, match="per-class"):
        focal_loss(x, t, alpha=0.25)
    with pytest.raises(ValueError, match="per-class"):
        crossent.nn.FocalLoss(alpha=0.25)
    with pytest.raises(ValueError, match="length 5"):
        focal_loss(x, t, alpha=[0.5, 0.5])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, "flsd-53"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_stay_finite(gamma, dtype):
    # margins of 20 and more, +-1e4: the textbook gradient g q (1-q)^(g-1) s is NaN here.
    x = torch.tensor(
        [[1e4, -1e4, 0.0], [30.0, 0.0, -30.0], [0.0, 20.0, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype
    ).requires_grad_()
    t = torch.tensor([0, 0, 1, 2])
    loss = focal_loss(x, t, gamma=gamma)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    loss_s = focal_loss(x, t, gamma=gamma, label_smoothing=0.1)
    (gs,) = torch.autograd.grad(loss_s, x)
    assert torch.isfinite(loss_s) and torch.isfinite(gs).all()


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0])
def test_focal_bounded_below_by_ce_minus_gamma_entropy(gamma):
    # Mukhoti et al. 2020: L_focal >= CE - gamma H(p) for gamma >= 1.
    x, t = inputs(n=200, k=7, scale=3.0, seed=3)
    focal = focal_loss(x, t, gamma=gamma, reduction="none")
    ce = F.cross_entropy(x, t, reduction="none")
    bound = ce - gamma * reference.row_entropy(x)
    assert bool((focal >= bound - 1e-12).all())


def test_masked_class_gets_zero_gradient():
    x = torch.randn(4, 5, dtype=torch.float64)
    x[:, 3] = float("-inf")
    x.requires_grad_()
    for gamma in (0.5, 2.0):
        for eps in (0.0, 0.1):
            loss = focal_loss(x, torch.tensor([0, 1, 2, 4]), gamma=gamma, label_smoothing=eps)
            (g,) = torch.autograd.grad(loss, x)
            assert torch.isfinite(g).all()
            if eps == 0:
                assert torch.isfinite(loss) and bool((g[:, 3] == 0).all())


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradcheck(gamma):
    x, t = inputs(n=4, k=3)
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, t, gamma=gamma), (x,))
    assert torch.autograd.gradcheck(
        lambda z: focal_loss(z, t, gamma=gamma, label_smoothing=0.2), (x,)
    )


# --- sigmoid focal loss -------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.25, 0.6, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_equals_torchvision(alpha, gamma, reduction):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(6, 4, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, 2, (6, 4), generator=g).double()
    tv_alpha = -1 if alpha is None else alpha
    assert_matches(
        lambda z: sigmoid_focal_loss(z, y, gamma=gamma, alpha=alpha, reduction=reduction),
        lambda z: reference.torchvision_sigmoid_focal_loss(z, y, tv_alpha, gamma, reduction),
        x,
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_sigmoid_focal_gradient_matches_lin_et_al_appendix(gamma):
    z = torch.linspace(-6, 6, 25, dtype=torch.float64).requires_grad_()
    loss = sigmoid_focal_loss(z, torch.ones_like(z), gamma=gamma, alpha=None, reduction="sum")
    (g,) = torch.autograd.grad(loss, z)
    p = torch.sigmoid(z.detach())
    # dFL/dz = (1-p)^g (g p log p + p - 1) for y = 1
    torch.testing.assert_close(g, (1 - p) ** gamma * (gamma * p * torch.log(p) + p - 1))


def test_sigmoid_focal_soft_targets_are_the_per_class_sum():
    x = torch.randn(10, dtype=torch.float64)
    y = torch.rand(10, dtype=torch.float64)
    p = torch.sigmoid(x)
    want = -(0.25 * y * (1 - p) ** 2 * torch.log(p) + 0.75 * (1 - y) * p**2 * torch.log(1 - p))
    torch.testing.assert_close(sigmoid_focal_loss(x, y, reduction="none"), want)


def test_sigmoid_focal_extreme_logits_finite():
    x = torch.tensor([1e4, -1e4, 40.0, -40.0, 0.0]).requires_grad_()
    for gamma in (0.0, 0.5, 2.0):
        for y in (torch.ones(5), torch.zeros(5)):
            loss = sigmoid_focal_loss(x, y, gamma=gamma)
            (g,) = torch.autograd.grad(loss, x)
            assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_sigmoid_focal_module_and_bad_alpha():
    x, y = torch.randn(5), torch.ones(5)
    m = crossent.nn.SigmoidFocalLoss(gamma=1.0, alpha=None, reduction="sum")
    assert m(x, y).item() == sigmoid_focal_loss(x, y, gamma=1.0, alpha=None, reduction="sum").item()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sigmoid_focal_loss(x, y, alpha=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        crossent.nn.SigmoidFocalLoss(gamma="flsd-53")
