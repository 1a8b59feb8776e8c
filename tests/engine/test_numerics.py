"""dtypes, masked classes, extreme logits, all-ignored batches."""

import pytest
import torch
import torch.nn.functional as F

import crossent
from crossent import terms
from crossent.engine import term_loss


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_half_inputs_float32_loss_input_dtype_gradient(dtype, eps):
    base = torch.randn(16, 37) * 4
    t = torch.randint(0, 37, (16,))
    x = base.to(dtype).requires_grad_()
    loss = crossent.cross_entropy(x, t, label_smoothing=eps)
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == dtype
    ref_x = base.to(dtype).float().requires_grad_()
    ref = F.cross_entropy(ref_x, t, label_smoothing=eps)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad.float(), ref_x.grad, rtol=1e-2, atol=1e-3)


def test_float64_stays_float64():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = crossent.cross_entropy(x, torch.tensor([0, 1, 2]))
    assert loss.dtype == torch.float64
    loss.backward()
    assert x.grad.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("binary", [False, True])
def test_float64_targets_promote_the_loss_as_pytorch(dtype, binary):
    # PyTorch returns promote_types(input, target): float64 probabilities give a float64 loss.
    torch.manual_seed(0)
    base = torch.randn(4, 5)
    if binary:
        t = torch.rand(4, 5, dtype=torch.float64)
        ours_fn, ref_fn = (
            crossent.binary_cross_entropy_with_logits,
            F.binary_cross_entropy_with_logits,
        )
    else:
        t = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1)
        ours_fn, ref_fn = crossent.cross_entropy, F.cross_entropy
    x = base.to(dtype).requires_grad_()
    ref_x = base.to(dtype).requires_grad_()
    loss, ref = ours_fn(x, t), ref_fn(ref_x, t)
    assert loss.dtype == ref.dtype == torch.float64
    loss.backward()
    ref.backward()
    assert x.grad.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(loss, ref, rtol=tol, atol=tol)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_unbatched_input_takes_a_one_element_index_target_as_pytorch(fn, reduction):
    # PyTorch reads a (1,) class index of (C,) logits as the 0-dim one; the loss is 0-dim.
    # (PyTorch 2.13's backward then fails with a size mismatch: the gradient is compared
    # with PyTorch's for the 0-dim index.)
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    loss = getattr(crossent, fn)(x, torch.tensor([3]), reduction=reduction)
    ref = getattr(F, fn)(ref_x.detach(), torch.tensor([3]), reduction=reduction)
    assert loss.shape == ref.shape == ()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    getattr(F, fn)(ref_x, torch.tensor(3), reduction=reduction).backward()
    torch.testing.assert_close(x.grad, ref_x.grad)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_class_contributes_nothing(eps):
    x = torch.randn(4, 6, dtype=torch.float64)
    x[:, 2] = float("-inf")
    x.requires_grad_()
    t = torch.tensor([0, 1, 3, 5])
    loss = crossent.cross_entropy(x, t)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(x.grad[:, 2] == 0)
    assert torch.isfinite(x.grad).all()
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(
        loss, F.cross_entropy(x.detach()[:, keep], torch.tensor([0, 1, 2, 4]))
    )


def test_masked_target_gives_inf_loss_finite_gradient():
    x = torch.randn(2, 4, dtype=torch.float64)
    x[0, 1] = float("-inf")
    x.requires_grad_()
    loss = crossent.cross_entropy(x, torch.tensor([1, 0]))
    assert loss.item() == float("inf")
    assert loss.item() == F.cross_entropy(x.detach(), torch.tensor([1, 0])).item()
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_fully_masked_row_never_nan_gradient():
    x = torch.full((2, 3), float("-inf"))
    x[1] = torch.randn(3)
    x.requires_grad_()
    loss = crossent.cross_entropy(x, torch.tensor([0, 1]), reduction="none")
    assert loss[0].item() == float("inf")
    assert torch.isfinite(loss[1])
    loss[1].backward()
    assert not torch.isnan(x.grad).any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_extreme_logits_finite(dtype, eps):
    big = 6e4 if dtype == torch.float16 else 1e4
    x = torch.tensor([[big, -big, 0.0], [-big, big, big], [0.0, 0.0, -big]], dtype=dtype)
    x.requires_grad_()
    loss = crossent.cross_entropy(x, torch.tensor([1, 0, 2]), label_smoothing=eps, z_loss=1e-9)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()


def test_fp16_whole_range_finite():
    x = torch.linspace(-65504, 65504, 64 * 9).reshape(64, 9).half().requires_grad_()
    loss = crossent.cross_entropy(x, torch.randint(0, 9, (64,)))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_all_ignored_gives_zero_loss_and_gradient(eps):
    x = torch.randn(3, 4, requires_grad=True)
    t = torch.full((3,), -100)
    loss = crossent.cross_entropy(x, t, label_smoothing=eps)
    assert loss.item() == 0.0
    assert torch.isnan(F.cross_entropy(x, t, label_smoothing=eps))  # PyTorch: NaN
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_all_target_weights_zero_gives_zero():
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.tensor([0.0, 1.0, 1.0, 1.0])
    loss = crossent.cross_entropy(x, torch.zeros(3, dtype=torch.long), weight=w)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_z_loss_adds_squared_lse():
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, -100, 3, 2])
    base = crossent.cross_entropy(x, t, reduction="none")
    with_z = crossent.cross_entropy(x, t, reduction="none", z_loss=0.1)
    lse = torch.logsumexp(x, 1)
    expected = base + 0.1 * lse**2 * (t != -100)
    torch.testing.assert_close(with_z, expected)


def test_does_not_write_into_callers_logits():
    x = torch.randn(8, 10, requires_grad=True)
    before = x.detach().clone()
    crossent.cross_entropy(x, torch.randint(0, 10, (8,)), label_smoothing=0.1).backward()
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch(reduction):
    x = torch.randn(0, 5, requires_grad=True)
    loss = crossent.cross_entropy(x, torch.zeros(0, dtype=torch.long), reduction=reduction)
    assert loss.shape == ((0,) if reduction == "none" else ())
    (2 * loss.sum()).backward()
    assert x.grad.shape == (0, 5)


def test_target_far_below_the_maximum_matches_float64():
    # q_t underflows float32 here (s_t = -100, -2e4): the loss is still z_t - lse, exactly.
    x = torch.tensor([[0.0, 100.0, 3.0], [1e4, 0.0, -1e4], [5.0, 5.0, 5.0]], requires_grad=True)
    t = torch.tensor([0, 2, 1])
    loss = crossent.cross_entropy(x, t, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    x64 = x.detach().double().requires_grad_()
    ref = F.cross_entropy(x64, t, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), x64)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "term",
    [terms.CrossEntropyTerm(), terms.FocalTerm(2.0), terms.LqTerm(0.7)],
    ids=["ce", "focal", "gce"],
)
def test_softmax_and_log_sum_exp_routes_agree(term):
    # Without in-place, (N, K) chunks take q from the fused softmax (s_t = log q_t); in
    # place they take it from log-sum-exp. Rows with a tiny, masked or fully masked target
    # are recomputed on the first route: both must agree everywhere.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 50, generator=g) * 4
    t = torch.randint(0, 50, (64,), generator=g)
    x[1, t[1]] = -200.0  # q_t ~ e^-200: underflows
    x[2, t[2]] = float("-inf")  # masked target
    x[3, :] = float("-inf")  # fully masked row
    x[4, :] = torch.linspace(-1e4, 1e4, 50)
    t[5] = -100  # ignored
    keep = torch.ones(64, dtype=torch.bool)
    keep[2:4] = False  # infinite losses: compare their gradients only
    out = {}
    for inplace in (False, True):
        z = x.clone().requires_grad_()
        logits = z * 1.0  # an operation's output, so in place is allowed
        loss = term_loss(logits, t, term, reduction="none", inplace_backward=inplace)
        loss[keep].sum().backward()
        out[inplace] = (loss.detach(), z.grad)
    torch.testing.assert_close(out[False][0][keep], out[True][0][keep])
    torch.testing.assert_close(out[False][0][~keep], out[True][0][~keep])
    torch.testing.assert_close(out[False][1], out[True][1])
    assert torch.isfinite(out[False][1]).all()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_z_loss_is_unweighted_and_skips_only_ignored(eps):
    # A class weight of 0 removes the cross-entropy term, not the z-loss: the same rule on the
    # one-hot fast path (eps = 0) and the smoothed path.
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, -100, 3, 0])
    w = torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    kw = dict(weight=w, label_smoothing=eps, reduction="none")
    base = crossent.cross_entropy(x, t, **kw)
    with_z = crossent.cross_entropy(x, t, z_loss=0.1, **kw)
    lse = torch.logsumexp(x, 1)
    expected = base + 0.1 * lse**2 * (t != -100)
    torch.testing.assert_close(with_z, expected)
    go = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    (got,) = torch.autograd.grad(with_z, x, go)
    (want,) = torch.autograd.grad(expected, x, go)
    torch.testing.assert_close(got, want)


TIED_EXTREME = torch.tensor([[1e4, 1e4, -1e4], [-1e4, 1e4, 1e4], [1e4, -1e4, 1e4]])


@pytest.mark.parametrize(
    "name",
    [
        "focal_loss",
        "generalized_cross_entropy",
        "mae_loss",
        "reverse_cross_entropy",
        "brier_loss",
        "entropy_regularized_cross_entropy",
    ],
)
@pytest.mark.parametrize("soft", [False, True])
def test_tied_extreme_logits_keep_float32_precision(name, soft):
    """``s = (z - m) - log d``: a tie at 1e4 gives exactly ``log 1/2`` (``z - lse`` does not)."""
    fn = getattr(crossent, name)
    t = torch.tensor([0, 2, 1])
    if soft:
        t = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])
    x = TIED_EXTREME.clone().requires_grad_()
    x64 = TIED_EXTREME.double().requires_grad_()
    ours = fn(x, t)
    exact = fn(x64, t.double() if soft else t)
    torch.testing.assert_close(ours.double(), exact, rtol=1.3e-6, atol=1e-5)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x)[0].double(), torch.autograd.grad(exact, x64)[0]
    )
