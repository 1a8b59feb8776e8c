"""Laws that hold for all inputs: gradient = finite differences, rows of the gradient sum
to 0 (softmax is shift invariant), finite values at extreme logits.

Every loss here is a sum of per-row (per-element for the binary losses) terms, so the
finite differences of all coordinates are taken in one call on a batch of perturbed rows.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crossent import functional as CF

# Generated logits sometimes have rows in [0, 1] that sum to 1; the laws hold for those too,
# and the double-softmax warning they rightly raise is tested in tests/test_bad_input.py.
pytestmark = pytest.mark.filterwarnings("ignore::crossent.ProbabilityInputWarning")

ENGINE = {
    "focal": lambda x, t, **kw: CF.focal_loss(x, t, gamma=1.5, **kw),
    "focal_small_gamma": lambda x, t, **kw: CF.focal_loss(x, t, gamma=0.3, **kw),
    "flsd53": lambda x, t, **kw: CF.focal_loss(x, t, gamma="flsd-53", **kw),
    "gce": lambda x, t, **kw: CF.generalized_cross_entropy(x, t, q=0.7, **kw),
    "gce_truncated": lambda x, t, **kw: CF.generalized_cross_entropy(x, t, truncate=0.1, **kw),
    "mae": CF.mae_loss,
    "unhinged": CF.unhinged_loss,
    "rce": CF.reverse_cross_entropy,
    "sce": CF.symmetric_cross_entropy,
    "poly1": CF.poly1_cross_entropy,
    "erce": lambda x, t, **kw: CF.entropy_regularized_cross_entropy(x, t, beta=0.5, **kw),
    "brier": CF.brier_loss,
}
NORMALIZED = {
    "nce": CF.normalized_cross_entropy,
    "nfl": lambda x, t, **kw: CF.normalized_focal_loss(x, t, gamma=0.5, **kw),
    "apl": lambda x, t, **kw: CF.active_passive_loss(x, t, active="nfl", passive="mae", **kw),
}
# Where a loss has a kink (its gradient jumps), finite differences across it are meaningless.
KINKS = {"flsd53": [0.2], "gce_truncated": [0.1]}


@st.composite
def problems(draw):
    n = draw(st.integers(1, 3))
    k = draw(st.integers(2, 5))
    x = draw(arrays(np.float64, (n, k), elements=st.floats(-8, 8)))
    t = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return torch.from_numpy(x), torch.tensor(t)


def rowwise_finite_differences(per_row, x, t, h=1e-6):
    """``d sum_i loss_i / d x`` from one call of ``per_row`` on ``2 n k`` perturbed rows."""
    n, k = x.shape
    steps = h * torch.eye(k, dtype=x.dtype)
    rows = torch.cat([x[:, None, :] + steps, x[:, None, :] - steps], dim=1)  # (n, 2k, k)
    losses = per_row(rows.reshape(-1, k), t.repeat_interleave(2 * k)).reshape(n, 2, k)
    return (losses[:, 0] - losses[:, 1]) / (2 * h)


def check_gradient(per_row, x, t):
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(per_row(xr, t).sum(), xr)
    torch.testing.assert_close(g, rowwise_finite_differences(per_row, x, t), rtol=1e-4, atol=1e-6)
    zeros = torch.zeros(x.shape[0], dtype=x.dtype)
    torch.testing.assert_close(g.sum(dim=1), zeros, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", sorted(ENGINE))
@settings(max_examples=15, deadline=None)
@given(problem=problems(), eps=st.sampled_from([0.0, 0.15]))
def test_engine_gradient_is_finite_difference(name, problem, eps):
    x, t = problem
    probs = torch.softmax(x, dim=1)
    for level in KINKS.get(name) or []:
        assume((probs - level).abs().min().item() > 1e-4)
    if name == "mae":
        big_p = torch.full_like(probs, eps / x.shape[1]).scatter(
            1, t[:, None], 1 - eps + eps / x.shape[1]
        )
        assume((probs - big_p).abs().min().item() > 1e-4)
    check_gradient(lambda z, y: ENGINE[name](z, y, label_smoothing=eps, reduction="none"), x, t)


@settings(max_examples=15, deadline=None)
@given(problem=problems(), q=st.sampled_from([0.0, 0.3, 1.0]))
def test_sgce_gradient_is_finite_difference(problem, q):
    x, t = problem
    eps = min(0.1, (x.shape[1] - 1) / x.shape[1])
    check_gradient(
        lambda z, y: CF.smooth_generalized_cross_entropy(
            z, y, q=q, label_smoothing=eps, reduction="none"
        ),
        x,
        t,
    )


@pytest.mark.parametrize("name", sorted(NORMALIZED))
@settings(max_examples=15, deadline=None)
@given(problem=problems())
def test_normalized_gradient_is_finite_difference(name, problem):
    x, t = problem
    check_gradient(lambda z, y: NORMALIZED[name](z, y, reduction="none"), x, t)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd", "mixed"])
@settings(max_examples=10, deadline=None)
@given(problem=problems(), temperature=st.sampled_from([1.0, 2.0]))
def test_distillation_gradient_is_finite_difference(divergence, problem, temperature):
    x, _ = problem
    n, k = x.shape
    teacher = x.flip(0).roll(1, dims=1)

    def per_row(z, _):
        reps = z.shape[0] // n
        return CF.distillation_loss(
            z,
            teacher.repeat_interleave(reps, dim=0),
            temperature=temperature,
            divergence=divergence,
            reduction="none",
        )

    check_gradient(per_row, x, torch.zeros(n, dtype=torch.long))


@settings(max_examples=20, deadline=None)
@given(
    x=arrays(np.float64, (8,), elements=st.floats(-10, 10)),
    y=arrays(np.float64, (8,), elements=st.floats(0, 1)),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_binary_gradients_are_finite_difference(x, y, gamma):
    x, y, h = torch.from_numpy(x), torch.from_numpy(y), 1e-6
    for fn in (
        lambda z: CF.sigmoid_focal_loss(z, y, gamma=gamma, reduction="none"),
        lambda z: CF.binary_generalized_cross_entropy(z, y, q=0.7, reduction="none"),
        lambda z: CF.binary_smooth_generalized_cross_entropy(z, y, reduction="none"),
    ):
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(xr).sum(), xr)
        # elementwise losses: one call per side gives every partial derivative
        torch.testing.assert_close(g, (fn(x + h) - fn(x - h)) / (2 * h), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ENGINE) + sorted(NORMALIZED))
@settings(max_examples=10, deadline=None)
@given(
    x=arrays(np.float32, (3, 4), elements=st.sampled_from([-1e4, -50.0, -20.0, 0.0, 20.0, 1e4])),
    t=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    eps=st.sampled_from([0.0, 0.1]),
)
def test_extreme_logits_stay_finite(name, x, t, eps):
    xr = torch.from_numpy(x).requires_grad_()
    kw = {"label_smoothing": eps} if name in ENGINE else {}
    loss = (ENGINE.get(name) or NORMALIZED[name])(xr, torch.tensor(t), **kw)
    (g,) = torch.autograd.grad(loss, xr)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert not math.isnan(loss.item())
