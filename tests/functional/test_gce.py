"""Generalized cross-entropy (Lq), its truncated and smoothed forms, binary forms."""

import pytest
import torch
import torch.nn.functional as F

import crossent.nn
from crossent.functional import (
    binary_cross_entropy_with_logits,
    binary_generalized_cross_entropy,
    binary_smooth_generalized_cross_entropy,
    cross_entropy,
    generalized_cross_entropy,
    smooth_generalized_cross_entropy,
    unhinged_loss,
)
from tests import reference
from tests.functional.helpers import assert_matches, inputs, soft_targets

CASES = [
    # q, truncate, weight, eps, smoothing, reduction
    (0.7, None, False, 0.0, "uniform", "mean"),
    (0.7, None, True, 0.0, "uniform", "sum"),
    (0.3, None, True, 0.2, "uniform", "none"),
    (0.7, None, False, 0.2, "others", "mean"),
    (1.0, None, True, 0.1, "others", "mean"),
    (0.0, None, True, 0.1, "uniform", "mean"),
    (0.7, 0.3, False, 0.0, "uniform", "mean"),
    (0.5, 0.1, True, 0.2, "others", "none"),
    (0.0, 0.2, False, 0.0, "uniform", "sum"),
]


@pytest.mark.parametrize("q,truncate,weight,eps,smoothing,reduction", CASES)
def test_gce_matches_reference(q, truncate, weight, eps, smoothing, reduction):
    x, t = inputs(ignore_index=-100)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64) if weight else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=eps, smoothing=smoothing)
    assert_matches(
        lambda z: generalized_cross_entropy(z, t, q=q, truncate=truncate, **kw),
        lambda z: reference.per_class_loss(z, t, reference.lq_elem(q, truncate), **kw),
        x,
    )


def test_gce_probability_targets():
    x, _ = inputs()
    p = soft_targets()
    assert_matches(
        lambda z: generalized_cross_entropy(z, p, q=0.4),
        lambda z: reference.per_class_loss(z, p, reference.lq_elem(0.4)),
        x,
    )


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_q_zero_is_exactly_cross_entropy(eps):
    x, t = inputs(dtype=torch.float32, ignore_index=-100)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3])
    got = generalized_cross_entropy(x, t, q=0.0, weight=w, label_smoothing=eps)
    want = F.cross_entropy(x, t, weight=w, label_smoothing=eps)
    torch.testing.assert_close(got, want)


def test_q_one_is_unhinged():
    x, t = inputs(ignore_index=-100)
    torch.testing.assert_close(generalized_cross_entropy(x, t, q=1.0), unhinged_loss(x, t))
    p = torch.softmax(x.detach(), 1)
    want = (1 - p[torch.arange(1, 7), t[1:]]).mean()
    torch.testing.assert_close(generalized_cross_entropy(x, t, q=1.0), want)


def test_small_q_within_1e_3_of_cross_entropy_in_float32():
    # p_t from 0.05 to 0.99 over 10 classes; (1 - p^q)/q = CE - q CE^2/2 + ... mathematically.
    p_t = torch.linspace(0.05, 0.99, 40, dtype=torch.float64)
    probs = torch.cat([p_t[:, None], ((1 - p_t) / 9)[:, None].expand(40, 9)], dim=1)
    x = torch.log(probs).float().requires_grad_()
    t = torch.zeros(40, dtype=torch.long)
    got = generalized_cross_entropy(x, t, q=1e-4, reduction="none")
    want = F.cross_entropy(x, t, reduction="none")
    assert (got - want).abs().max().item() < 1e-3
    (g1,) = torch.autograd.grad(got.sum(), x)
    (g2,) = torch.autograd.grad(want.sum(), x)
    assert (g1 - g2).abs().max().item() < 1e-3
    # and no cancellation: float32 is within float rounding of the float64 Lq value
    exact = (1 - p_t**1e-4) / 1e-4
    assert (got.double() - exact).abs().max().item() < 1e-5


def test_truncated_loss_is_flat_below_k():
    # p_t = 0.1 <= k = 0.3: constant (1 - k^q)/q, zero gradient.
    x = torch.log(torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64)).requires_grad_()
    loss = generalized_cross_entropy(x, torch.tensor([0]), q=0.7, truncate=0.3)
    assert loss.item() == pytest.approx((1 - 0.3**0.7) / 0.7)
    (g,) = torch.autograd.grad(loss, x)
    assert bool((g == 0).all())


def test_gce_extreme_logits_finite():
    x = torch.tensor([[1e4, -1e4, 0.0], [0.0, 30.0, -30.0]]).requires_grad_()
    t = torch.tensor([1, 0])
    for q in (0.0, 1e-4, 0.7, 1.0):
        for eps in (0.0, 0.1):
            loss = generalized_cross_entropy(x, t, q=q, label_smoothing=eps)
            (g,) = torch.autograd.grad(loss, x)
            assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_gce_gradcheck():
    x, t = inputs(n=4, k=3)
    assert torch.autograd.gradcheck(lambda z: generalized_cross_entropy(z, t, q=0.7), (x,))
    assert torch.autograd.gradcheck(
        lambda z: smooth_generalized_cross_entropy(z, t, q=0.5, label_smoothing=0.2), (x,)
    )


# --- smooth generalized cross-entropy ------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["others", "uniform"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_sgce_matches_reference(smoothing, reduction):
    x, t = inputs(ignore_index=-100)
    assert_matches(
        lambda z: smooth_generalized_cross_entropy(z, t, smoothing=smoothing, reduction=reduction),
        lambda z: reference.per_class_loss(
            z,
            t,
            reference.lq_elem(0.7),
            label_smoothing=0.1,
            smoothing=smoothing,
            reduction=reduction,
        ),
        x,
    )


def test_sgce_defaults_and_q_to_zero_limit_is_ce_with_others_smoothing():
    x, t = inputs(dtype=torch.float64)
    default = smooth_generalized_cross_entropy(x, t)
    explicit = generalized_cross_entropy(x, t, q=0.7, label_smoothing=0.1, smoothing="others")
    torch.testing.assert_close(default, explicit)
    limit = smooth_generalized_cross_entropy(x, t, q=0.0)
    ce = cross_entropy(x, t, label_smoothing=0.1, smoothing="others")
    torch.testing.assert_close(limit, ce)
    near = smooth_generalized_cross_entropy(x, t, q=1e-7)
    torch.testing.assert_close(near, ce, rtol=1e-5, atol=1e-6)
    assert abs(limit.item() - F.cross_entropy(x, t, label_smoothing=0.1).item()) > 1e-4


def test_sgce_is_k_times_the_form_found_in_the_wild():
    x, t = inputs(n=8, k=6)
    p = torch.softmax(x.detach(), 1)
    big_p = reference.target_matrix(t, 6, 0.1, "others")
    wild = (big_p * (1 - p**0.7) / 0.7).mean()  # a mean over N * K entries
    assert smooth_generalized_cross_entropy(x, t).item() == pytest.approx(6 * wild.item())


# --- binary forms ---------------------------------------------------------------------------


def _binary_inputs():
    g = torch.Generator().manual_seed(2)
    x = (3 * torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, 2, (5, 3), generator=g).double()
    return x, y


@pytest.mark.parametrize("q", [0.0, 0.3, 0.7, 1.0])
def test_binary_gce_matches_reference(q):
    x, y = _binary_inputs()
    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    assert_matches(
        lambda z: binary_generalized_cross_entropy(z, y, q=q, reduction="none"),
        lambda z: reference.binary_lq(z, y, q),
        x,
    )
    if q == 0:
        torch.testing.assert_close(
            binary_generalized_cross_entropy(x, y, q=0.0, pos_weight=pw),
            binary_cross_entropy_with_logits(x, y, pos_weight=pw),
        )


@pytest.mark.parametrize("smoothing,eps", [("others", 0.1), ("uniform", 0.1), ("others", 0.5)])
def test_binary_sgce_smooths_the_target(smoothing, eps):
    x, y = _binary_inputs()
    y_s = (1 - eps) * y + eps * (1 - y) if smoothing == "others" else y * (1 - eps) + eps / 2
    assert_matches(
        lambda z: binary_smooth_generalized_cross_entropy(
            z, y, label_smoothing=eps, smoothing=smoothing, reduction="sum"
        ),
        lambda z: reference.binary_lq(z, y_s, 0.7).sum(),
        x,
    )


def test_binary_sgce_rejects_others_beyond_half():
    x, y = _binary_inputs()
    with pytest.raises(ValueError, match="1/2"):
        binary_smooth_generalized_cross_entropy(x, y, label_smoothing=0.6)
    with pytest.raises(ValueError, match="1/2"):
        crossent.nn.BinarySGCELoss(label_smoothing=0.6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_smooth_generalized_cross_entropy(x, 2 * y, label_smoothing=0.1)
