"""Poly-1, the confidence penalty (entropy-regularized CE) and the Brier loss."""

import pytest
import torch
import torch.nn.functional as F

from crossent.functional import (
    brier_loss,
    entropy_regularized_cross_entropy,
    poly1_cross_entropy,
)
from tests import reference
from tests.functional.helpers import assert_matches, inputs, soft_targets

W = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64)

LOSSES = [
    (poly1_cross_entropy, {}, reference.poly1_elem(1.0)),
    (poly1_cross_entropy, {"epsilon": -1.0}, reference.poly1_elem(-1.0)),
    (poly1_cross_entropy, {"epsilon": 2.0}, reference.poly1_elem(2.0)),
    (entropy_regularized_cross_entropy, {}, reference.confidence_penalty_elem(0.1)),
    (entropy_regularized_cross_entropy, {"beta": 0.8}, reference.confidence_penalty_elem(0.8)),
    (brier_loss, {}, reference.brier_elem),
]
SETTINGS = [
    {},
    {"weight": W, "reduction": "sum"},
    {"label_smoothing": 0.2, "reduction": "none"},
    {"label_smoothing": 0.2, "smoothing": "others", "weight": W},
]


@pytest.mark.parametrize("fn,hyper,elem", LOSSES)
@pytest.mark.parametrize("kw", SETTINGS)
def test_matches_reference(fn, hyper, elem, kw):
    x, t = inputs(ignore_index=-100)
    assert_matches(
        lambda z: fn(z, t, **hyper, **kw), lambda z: reference.per_class_loss(z, t, elem, **kw), x
    )


@pytest.mark.parametrize("fn,hyper,elem", LOSSES)
def test_probability_targets_and_gradcheck(fn, hyper, elem):
    x, t = inputs(n=4, k=3)
    p = soft_targets(n=4, k=3)
    assert_matches(lambda z: fn(z, p, **hyper), lambda z: reference.per_class_loss(z, p, elem), x)
    assert torch.autograd.gradcheck(lambda z: fn(z, t, **hyper), (x,))
    assert torch.autograd.gradcheck(lambda z: fn(z, t, label_smoothing=0.1, **hyper), (x,))


def test_poly1_closed_form_and_epsilon_zero_is_ce():
    x, t = inputs(ignore_index=-100)
    p_t = torch.softmax(x.detach(), 1)[torch.arange(1, 7), t[1:]]
    ce = F.cross_entropy(x, t, reduction="none")[1:]
    torch.testing.assert_close(poly1_cross_entropy(x, t), (ce + 1.0 * (1 - p_t)).mean())
    torch.testing.assert_close(poly1_cross_entropy(x, t, epsilon=0.0), F.cross_entropy(x, t))


def test_poly1_smoothed_equals_papers_form():
    # CE(P) + eps (1 - <P, p>) with the smoothed target P (Leng et al.'s listing).
    x, t = inputs()
    big_p = reference.target_matrix(t, 5, 0.1, "uniform")
    p = torch.softmax(x.detach(), 1)
    want = F.cross_entropy(x, t, label_smoothing=0.1, reduction="none") + 2.0 * (
        1 - (big_p * p).sum(1)
    )
    got = poly1_cross_entropy(x, t, epsilon=2.0, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(got, want)


def test_confidence_penalty_is_ce_minus_beta_entropy():
    x, t = inputs()
    want = F.cross_entropy(x, t, reduction="none") - 0.3 * reference.row_entropy(x)
    got = entropy_regularized_cross_entropy(x, t, beta=0.3, reduction="none")
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        entropy_regularized_cross_entropy(x, t, beta=0.0), F.cross_entropy(x, t)
    )


def test_brier_closed_form():
    x, t = inputs()
    p = torch.softmax(x.detach(), 1)
    want = ((p - F.one_hot(t, 5)) ** 2).sum(1).mean()
    torch.testing.assert_close(brier_loss(x, t), want)


def test_extreme_logits_and_masked_classes_finite():
    x = torch.tensor([[1e4, -1e4, 0.0], [0.0, 30.0, -30.0], [0.0, float("-inf"), 1.0]])
    x.requires_grad_()
    t = torch.tensor([1, 0, 2])
    for fn in (poly1_cross_entropy, entropy_regularized_cross_entropy, brier_loss):
        for eps in (0.0, 0.1):
            loss = fn(x[:2], t[:2], label_smoothing=eps)
            (g,) = torch.autograd.grad(loss, x)
            assert torch.isfinite(loss) and torch.isfinite(g).all()
        loss = fn(x, t)  # a masked class that is not the target
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all() and g[2, 1].item() == 0
