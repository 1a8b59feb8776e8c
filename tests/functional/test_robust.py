"""MAE, unhinged, reverse / symmetric / normalized cross-entropy, active passive loss."""

import math

import pytest
import torch
import torch.nn.functional as F

import crossent.nn
from crossent.functional import (
    active_passive_loss,
    mae_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    reverse_cross_entropy,
    symmetric_cross_entropy,
    unhinged_loss,
)
from tests import reference
from tests.functional.helpers import assert_matches, inputs, soft_targets

W = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64)
A = math.log(1e-4)

ENGINE_LOSSES = [
    (mae_loss, {}, reference.mae_elem),
    (unhinged_loss, {}, reference.unhinged_elem),
    (reverse_cross_entropy, {}, reference.rce_elem(A)),
    (reverse_cross_entropy, {"A": -4.0}, reference.rce_elem(-4.0)),
    (symmetric_cross_entropy, {}, reference.sce_elem(0.1, 1.0, A)),
    (
        symmetric_cross_entropy,
        {"alpha": 0.5, "beta": 2.0, "A": -3.0},
        reference.sce_elem(0.5, 2.0, -3.0),
    ),
]
SETTINGS = [
    {},
    {"weight": W, "reduction": "sum"},
    {"label_smoothing": 0.2, "reduction": "none"},
    {"label_smoothing": 0.2, "smoothing": "others", "weight": W},
]


@pytest.mark.parametrize("fn,hyper,elem", ENGINE_LOSSES)
@pytest.mark.parametrize("kw", SETTINGS)
def test_engine_losses_match_reference(fn, hyper, elem, kw):
    x, t = inputs(ignore_index=-100)
    assert_matches(
        lambda z: fn(z, t, **hyper, **kw), lambda z: reference.per_class_loss(z, t, elem, **kw), x
    )


@pytest.mark.parametrize("fn,hyper,elem", ENGINE_LOSSES)
def test_engine_losses_probability_targets(fn, hyper, elem):
    x, _ = inputs()
    p = soft_targets()
    assert_matches(lambda z: fn(z, p, **hyper), lambda z: reference.per_class_loss(z, p, elem), x)


def test_one_hot_closed_forms():
    x, t = inputs(ignore_index=-100)
    p_t = torch.softmax(x.detach(), 1)[torch.arange(1, 7), t[1:]]
    torch.testing.assert_close(mae_loss(x, t), (2 * (1 - p_t)).mean())
    torch.testing.assert_close(unhinged_loss(x, t), (1 - p_t).mean())
    torch.testing.assert_close(reverse_cross_entropy(x, t), (-A * (1 - p_t)).mean())
    torch.testing.assert_close(reverse_cross_entropy(x, t, A=-4.0), (4 * (1 - p_t)).mean())


@pytest.mark.parametrize("kw", [{}, {"weight": W.float(), "label_smoothing": 0.1}])
def test_sce_alpha_one_beta_zero_is_cross_entropy(kw):
    x, t = inputs(dtype=torch.float32, ignore_index=-100)
    got = symmetric_cross_entropy(x, t, alpha=1.0, beta=0.0, **kw)
    want = F.cross_entropy(x, t, **kw)
    torch.testing.assert_close(got, want)
    (g1,) = torch.autograd.grad(got, x)
    (g2,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(g1, g2)


def test_sce_is_alpha_ce_plus_beta_rce():
    x, t = inputs()
    sce = symmetric_cross_entropy(x, t, alpha=0.3, beta=0.7)
    want = 0.3 * F.cross_entropy(x, t) + 0.7 * reverse_cross_entropy(x, t)
    torch.testing.assert_close(sce, want)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("ignore", [None, 3])
def test_normalized_losses_match_reference(gamma, ignore):
    x, t = inputs(ignore_index=ignore)
    ii = -100 if ignore is None else ignore

    def ours(z):
        if gamma == 0:
            return normalized_cross_entropy(z, t, ignore_index=ii)
        return normalized_focal_loss(z, t, gamma=gamma, ignore_index=ii)

    assert_matches(ours, lambda z: reference.normalized_loss(z, t, gamma, ignore_index=ii), x)


@pytest.mark.parametrize("gamma", [0.0, 0.5])
@pytest.mark.parametrize("eps,smoothing", [(0.0, "uniform"), (0.2, "uniform"), (0.2, "others")])
def test_normalized_losses_with_weights_and_smoothing_match_reference(gamma, eps, smoothing):
    x, t = inputs(ignore_index=-100)
    w = W
    kw = dict(weight=w, label_smoothing=eps, smoothing=smoothing)

    def ours(z):
        if gamma == 0:
            return normalized_cross_entropy(z, t, **kw)
        return normalized_focal_loss(z, t, gamma=gamma, **kw)

    assert_matches(ours, lambda z: reference.normalized_loss(z, t, gamma, **kw), x)
    assert torch.autograd.gradcheck(ours, (x,))


def test_normalized_weight_on_probability_targets_weights_each_class():
    x, _ = inputs()
    p = torch.softmax(torch.randn(x.shape, dtype=torch.float64), 1)
    w = torch.rand(x.shape[1], dtype=torch.float64) + 0.5
    assert_matches(
        lambda z: normalized_cross_entropy(z, p, weight=w, label_smoothing=0.1),
        lambda z: reference.normalized_loss(z, p, weight=w, label_smoothing=0.1),
        x,
    )


def test_active_passive_common_arguments_apply_to_both_parts():
    x, t = inputs(ignore_index=-100)
    w = torch.rand(x.shape[1], dtype=torch.float64) + 0.5
    kw = dict(weight=w, label_smoothing=0.1, smoothing="others")
    got = active_passive_loss(x, t, alpha=0.7, beta=2.0, **kw)
    want = 0.7 * normalized_cross_entropy(x, t, **kw) + 2.0 * reverse_cross_entropy(x, t, **kw)
    torch.testing.assert_close(got, want)
    module = crossent.nn.APLoss(alpha=0.7, beta=2.0, **kw)
    torch.testing.assert_close(module(x, t), got)


def test_normalized_losses_probability_targets_and_reductions():
    x, t = inputs()
    p = soft_targets()
    assert_matches(
        lambda z: normalized_focal_loss(z, p, gamma=1.0),
        lambda z: reference.normalized_loss(z, p, 1.0),
        x,
    )
    per = normalized_cross_entropy(x, t, reduction="none")
    assert per.shape == (7,)
    assert bool(((per >= 0) & (per <= 1)).all())
    torch.testing.assert_close(normalized_cross_entropy(x, t, reduction="sum"), per.sum())


def test_nce_of_uniform_prediction_is_one_over_k():
    for k in (2, 5, 10):
        loss = normalized_cross_entropy(torch.zeros(3, k), torch.tensor([0, 1, 1]))
        assert loss.item() == pytest.approx(1 / k)


def test_normalized_kdim_and_gradcheck():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 4))
    flat = lambda z: z.movedim(1, -1).reshape(-1, 3)  # noqa: E731
    assert_matches(
        lambda z: normalized_focal_loss(z, t, gamma=0.5),
        lambda z: reference.normalized_loss(flat(z), t.reshape(-1), 0.5),
        x,
    )
    assert torch.autograd.gradcheck(lambda z: normalized_focal_loss(z, t, gamma=0.5), (x,))
    assert torch.autograd.gradcheck(lambda z: normalized_cross_entropy(z, t), (x,))


def test_normalized_retain_graph_and_double_backward():
    x, t = inputs(n=4, k=3)
    loss = normalized_cross_entropy(x, t)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradgradcheck(lambda z: normalized_cross_entropy(z, t), (x,))


@pytest.mark.parametrize("active", ["nce", "nfl"])
@pytest.mark.parametrize("passive", ["rce", "mae"])
def test_active_passive_combinations(active, passive):
    x, t = inputs(ignore_index=-100)
    kw = {"alpha": 0.7, "beta": 2.0, "gamma": 0.5, "A": -4.0}
    got = active_passive_loss(x, t, active=active, passive=passive, **kw)
    act = (
        normalized_cross_entropy(x, t)
        if active == "nce"
        else normalized_focal_loss(x, t, gamma=0.5)
    )
    pas = reverse_cross_entropy(x, t, A=-4.0) if passive == "rce" else unhinged_loss(x, t)
    torch.testing.assert_close(got, 0.7 * act + 2.0 * pas)
    assert torch.autograd.gradcheck(
        lambda z: active_passive_loss(z, t, active=active, passive=passive, **kw), (x,)
    )


def test_apl_passive_mae_is_half_of_mae_loss():
    x, t = inputs()
    got = active_passive_loss(x, t, passive="mae", alpha=0.0)
    torch.testing.assert_close(got, 0.5 * mae_loss(x, t))


def test_extreme_logits_finite():
    x = torch.tensor([[1e4, -1e4, 0.0], [0.0, 30.0, -30.0], [5.0, 5.0, 5.0]]).requires_grad_()
    t = torch.tensor([1, 0, 2])
    fns = [
        mae_loss,
        unhinged_loss,
        reverse_cross_entropy,
        symmetric_cross_entropy,
        normalized_cross_entropy,
        lambda z, y: normalized_focal_loss(z, y, gamma=0.5),
        active_passive_loss,
        lambda z, y: active_passive_loss(z, y, active="nfl", passive="mae", gamma=0.5),
    ]
    for fn in fns:
        loss = fn(x, t)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_masked_class_finite_and_zero_gradient():
    x = torch.randn(4, 5, dtype=torch.float64)
    x[:, 2] = float("-inf")
    x.requires_grad_()
    t = torch.tensor([0, 1, 3, 4])
    for fn in (mae_loss, reverse_cross_entropy, symmetric_cross_entropy, normalized_cross_entropy):
        loss = fn(x, t)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all() and bool((g[:, 2] == 0).all())
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(
        normalized_cross_entropy(x, t),
        normalized_cross_entropy(x[:, keep], torch.tensor([0, 1, 2, 3])),
    )
