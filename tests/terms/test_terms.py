"""The per-class terms themselves: G = dF/ds, declared properties, numerics at the edges."""

import math

import pytest
import torch

from crossent.terms import (
    BrierTerm,
    ConfidencePenaltyTerm,
    CrossEntropyTerm,
    FLSD53FocalTerm,
    FocalTerm,
    ForwardKLTerm,
    JensenShannonTerm,
    LqTerm,
    MAETerm,
    Poly1Term,
    ReverseCrossEntropyTerm,
    ReverseKLTerm,
    ShiftedFocalTerm,
    UnhingedTerm,
    WeightedSumTerm,
)

TERMS = [
    FocalTerm(0.0),
    FocalTerm(0.5),
    FocalTerm(2.0),
    FLSD53FocalTerm(),
    LqTerm(0.0),
    LqTerm(0.7),
    LqTerm(1.0),
    LqTerm(0.5, truncate=0.2),
    UnhingedTerm(),
    MAETerm(),
    ReverseCrossEntropyTerm(math.log(1e-4)),
    Poly1Term(1.0),
    ConfidencePenaltyTerm(0.3),
    BrierTerm(),
    WeightedSumTerm([(0.1, CrossEntropyTerm()), (1.0, ReverseCrossEntropyTerm(-4.0))]),
    ShiftedFocalTerm(0.0, 0.05),
    ShiftedFocalTerm(0.5, 0.2),
    ShiftedFocalTerm(1.0, 0.05),
    ShiftedFocalTerm(2.5, 0.1),
    ShiftedFocalTerm(4.0, 0.05),
]
DISTILL = [ForwardKLTerm(), ReverseKLTerm(), JensenShannonTerm()]


def _points(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = -8 * torch.rand(n, generator=g, dtype=torch.float64) - 1e-3
    p = torch.rand(n, generator=g, dtype=torch.float64)
    return s, p


@pytest.mark.parametrize("term", TERMS + DISTILL, ids=repr)
def test_grad_is_derivative_of_value(term):
    s, p = _points()
    if isinstance(term, MAETerm):  # keep away from the kink p = e^s
        p = torch.where((p - s.exp()).abs() < 1e-3, p + 0.01, p)
    if isinstance(term, LqTerm) and term.truncate is not None:
        s = torch.where((s - math.log(term.truncate)).abs() < 1e-3, s - 0.01, s)
    if term in DISTILL:
        p = torch.log_softmax(torch.randn(200, dtype=torch.float64), 0)
    x = s.clone().requires_grad_()
    (g,) = torch.autograd.grad(term.value(x, p).sum(), x)
    torch.testing.assert_close(term.grad(s, p), g)


@pytest.mark.parametrize("term", TERMS + DISTILL, ids=repr)
def test_graph_and_in_place_paths_agree(term):
    # Terms may compute in place when no graph is recorded; both paths give the same numbers.
    s = torch.tensor([0.0, -0.0, -1e-30, -1e-8, -0.5, -30.0, -1e4, float("-inf")])
    p = torch.tensor([1.0, 0.3, 1.0, 0.5, 0.0, 0.2, 1.0, 0.0])
    if term in DISTILL:
        p = torch.log(p)
    fast_v, fast_g = term.value(s, p), term.grad(s, p)
    sr = s.clone().requires_grad_()
    torch.testing.assert_close(term.value(sr, p).detach(), fast_v, equal_nan=True)
    torch.testing.assert_close(term.grad(sr, p).detach(), fast_g, equal_nan=True)
    if not isinstance(term, ReverseKLTerm):  # KL(student || teacher) is inf where t = -inf < s
        assert torch.isfinite(fast_g).all()


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_focal_gradient_finite_on_saturated_rows(gamma):
    # s = 0 (p = 1) and s just below 0: the textbook g q (1-q)^(g-1) s is 0 * inf there.
    s = torch.tensor([0.0, -1e-12, -1e-7, -1e-3], dtype=torch.float32)
    g = FocalTerm(gamma).grad(s, torch.ones(()))
    assert torch.isfinite(g).all()
    if gamma > 0:
        assert g[0].item() == 0.0
    else:
        assert g[0].item() == -1.0


def test_declared_properties():
    for term in TERMS + DISTILL:
        s, p = _points(50)
        if term in DISTILL:
            continue
        zero = torch.zeros_like(p)
        if term.vanishes_where_target_zero:
            assert bool((term.value(s, zero) == 0).all()) and bool((term.grad(s, zero) == 0).all())
        if term.linear_in_target:
            one = torch.ones(())
            torch.testing.assert_close(term.value(s, p), p * term.value(s, one))
            torch.testing.assert_close(term.grad(s, p), p * term.grad(s, one))
    assert not any(t.vanishes_where_target_zero for t in DISTILL)
    assert {t.name for t in TERMS} >= {"focal", "lq", "unhinged", "mae", "brier", "poly1"}


def test_kernel_params():
    assert FocalTerm(2.0).kernel_params() == (2.0,)
    assert FLSD53FocalTerm().kernel_params() == (0.2, 5.0, 3.0)
    assert LqTerm(0.7).kernel_params() == (0.7, 0.0)
    assert LqTerm(0.7, truncate=0.5).kernel_params() == (0.7, 0.5)
    assert ReverseCrossEntropyTerm(-4.0).kernel_params() == (-4.0,)
    assert Poly1Term(2.0).kernel_params() == (2.0,)
    assert ConfidencePenaltyTerm(0.1).kernel_params() == (0.1,)
    assert UnhingedTerm().kernel_params() == () and BrierTerm().kernel_params() == ()
    sce = WeightedSumTerm([(0.1, CrossEntropyTerm()), (1.0, ReverseCrossEntropyTerm(-4.0))])
    assert sce.kernel_params() == (0.1, 1.0, -4.0)
    assert repr(FocalTerm(2.0)) == "FocalTerm(2)"


def test_masked_class_terms_are_finite():
    s = torch.tensor([float("-inf")])
    for term in TERMS:
        p = torch.zeros(1)
        assert torch.isfinite(term.grad(s, p)).all(), term
        if not term.vanishes_where_target_zero:  # the engine does not mask these
            assert torch.isfinite(term.value(s, p)).all(), term
    t = torch.log(torch.tensor([0.0, 0.5]))
    for term in DISTILL:
        st = torch.log(torch.tensor([0.0, 0.5]))
        assert bool((term.value(st, t) == 0).all()) and torch.isfinite(term.grad(st, t)).all()


@pytest.mark.parametrize("term", TERMS + DISTILL, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_and_grad_equals_value_and_grad_apart(term, dtype):
    s, p = _points()
    edges = torch.tensor([0.0, -1e-30, -1e-6, -30.0, -1e4, -2e4, -math.inf], dtype=torch.float64)
    s, p = torch.cat([s, edges]).to(dtype), torch.cat([p, torch.ones(7, dtype=torch.float64)])
    p = p.to(dtype)
    if term in DISTILL:
        p = torch.log_softmax(torch.randn(s.numel(), dtype=dtype), 0)
    value, grad = term.value_and_grad(s, p)
    assert torch.equal(value, term.value(s, p))
    assert torch.equal(grad, term.grad(s, p))
