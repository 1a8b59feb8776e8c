"""Laws that hold for all inputs (hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import crossent

shapes = st.tuples(st.integers(1, 6), st.integers(1, 9))


@st.composite
def problems(draw):
    n, k = draw(shapes)
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    t = torch.randint(0, k, (n,), generator=g)
    weighted = draw(st.booleans())
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.05 if weighted else None
    eps = draw(st.sampled_from([0.0, 0.1, 0.4]))
    smoothing = draw(st.sampled_from(["uniform", "others"])) if k > 1 else "uniform"
    if smoothing == "others":
        eps = min(eps, (k - 1) / k)
    return x, t, w, eps, smoothing


@settings(max_examples=60, deadline=None)
@given(problems())
def test_finite_and_gradient_rows_sum_to_zero(problem):
    x, t, w, eps, smoothing = problem
    x.requires_grad_()
    loss = crossent.cross_entropy(x, t, weight=w, label_smoothing=eps, smoothing=smoothing)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    torch.testing.assert_close(g.sum(1), torch.zeros(x.shape[0], dtype=x.dtype), atol=1e-10, rtol=0)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_gradient_equals_finite_differences(problem):
    x, t, w, eps, smoothing = problem
    x = x / x.abs().max().clamp(min=1) * 3  # keep central differences well conditioned
    x.requires_grad_()

    def f(z):
        return crossent.cross_entropy(
            z, t, weight=w, label_smoothing=eps, smoothing=smoothing, z_loss=1e-3
        )

    (g,) = torch.autograd.grad(f(x), x)
    h = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for idx in range(x.numel()):
            e = torch.zeros_like(x).view(-1)
            e[idx] = h
            e = e.view_as(x)
            fd.view(-1)[idx] = (f(x + e) - f(x - e)) / (2 * h)
    torch.testing.assert_close(g, fd, atol=1e-6, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_loss_at_least_the_smoothed_minimum(problem):
    x, t, w, eps, smoothing = problem
    loss = crossent.cross_entropy(x, t, label_smoothing=eps, smoothing=smoothing, reduction="none")
    bound = crossent.min_achievable_loss(x.shape[1], eps, smoothing)
    assert (loss >= bound - 1e-9).all()
