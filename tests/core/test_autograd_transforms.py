"""Every registry loss under PyTorch's autograd transforms, tested as PyTorch tests its ops.

For each name of ``crossent.registry`` (inputs of its kind from
``tests.reference_registry.inputs``, float64, small shapes), with ``reduction="mean"`` and
``"none"``: ``gradcheck`` with batched gradients and forward-mode AD, ``gradgradcheck``,
and the Jacobian by ``torch.func.jacfwd``, ``jacrev``, ``vmap(grad)``, forward-mode dual
tensors, ``is_grads_batched`` and ``jacobian(vectorize=True)``, all equal to the Jacobian
that the eager analytic backward gives row by row.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import crossent
from crossent import registry
from tests.reference_registry import inputs

NAMES = registry.available_losses()
REDUCTIONS = ["mean", "none"]


def _loss(name, reduction):
    """``f(z)`` of the loss with the rest of its inputs fixed, and the logits ``z``."""
    kind = registry.loss_kind(name)
    args, z = inputs(kind)
    if kind == "overlap":  # (2, 3, 2, 2): 24 logits keep gradgradcheck fast
        z, args = z[..., :2, :2], (z[..., :2, :2], args[1][..., :2, :2])
    module = registry.get_loss(name, reduction=reduction)
    rest = args[1:]
    return (lambda x: module(x, *rest)), z.detach()


def _eager_jacobian(f, z):
    """The Jacobian from the eager backward (the analytic gradient), one output at a time."""
    out = f(z.clone().requires_grad_())
    rows = []
    for i in range(max(1, out.numel())):
        x = z.clone().requires_grad_()
        y = f(x).reshape(-1)
        (g,) = torch.autograd.grad(y[i] if y.numel() else y.sum(), x)
        rows.append(g)
    return torch.stack(rows).reshape(*out.shape, *z.shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_batched_and_forward_ad(name, reduction):
    f, z = _loss(name, reduction)
    x = z.clone().requires_grad_()
    assert gradcheck(f, (x,), check_batched_grad=True, check_forward_ad=True)
    if reduction == "mean":  # double backward differentiates the same formula for "none"
        assert gradgradcheck(f, (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_transforms_agree_with_the_eager_backward(name, reduction):
    f, z = _loss(name, reduction)
    expected = _eager_jacobian(f, z)
    torch.testing.assert_close(torch.func.jacrev(f)(z), expected)
    torch.testing.assert_close(torch.func.jacfwd(f)(z), expected)
    torch.testing.assert_close(torch.autograd.functional.jacobian(f, z, vectorize=True), expected)
    out = f(z)
    v = torch.randn(3, *out.shape, dtype=out.dtype)  # three upstream gradients at once
    x = z.clone().requires_grad_()
    (batched,) = torch.autograd.grad(f(x), x, v, is_grads_batched=True)
    flat = expected.reshape(out.numel(), -1)
    torch.testing.assert_close(batched, (v.reshape(3, -1) @ flat).reshape(3, *z.shape))
    # forward mode: a dual tensor and torch.func.jvp give J @ t
    t = torch.randn_like(z)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(f(fwAD.make_dual(z, t))).tangent
    assert tangent is not None, "forward-mode AD dropped the tangent"
    jt = (flat @ t.reshape(-1)).reshape(out.shape)
    torch.testing.assert_close(tangent, jt)
    torch.testing.assert_close(torch.func.jvp(f, (z,), (t,))[1], jt)


@pytest.mark.parametrize("name", ["ce", "focal", "bce", "nce", "distill"])
def test_vmap_of_grad_matches_per_sample_grads(name):
    f, z = _loss(name, "mean")
    batch = torch.stack([z, 0.5 * z, -z])
    got = torch.func.vmap(torch.func.grad(f))(batch)
    for zi, gi in zip(batch, got, strict=True):
        x = zi.clone().requires_grad_()
        (expected,) = torch.autograd.grad(f(x), x)
        torch.testing.assert_close(gi, expected)


def test_forward_ad_tangent_of_cross_entropy_is_pytorchs():
    """The issue's call: a dual tensor through ``crossent.cross_entropy`` keeps its tangent."""
    z, t = torch.randn(3, 4), torch.tensor([0, 3, 1])
    tangent = torch.randn(3, 4)
    with fwAD.dual_level():
        ours = fwAD.unpack_dual(crossent.cross_entropy(fwAD.make_dual(z, tangent), t))
        theirs = fwAD.unpack_dual(F.cross_entropy(fwAD.make_dual(z, tangent), t))
    torch.testing.assert_close(ours.primal, theirs.primal)
    assert ours.tangent is not None
    torch.testing.assert_close(ours.tangent, theirs.tangent)


def test_forward_ad_tangent_of_a_probability_target_and_class_weight():
    """A tangent on another input (soft target, class weight) is carried."""
    z = torch.randn(4, 5, dtype=torch.float64)
    p = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1)
    dp = torch.randn_like(p)
    w = torch.rand(5, dtype=torch.float64) + 0.5
    dw = torch.randn_like(w)
    t = torch.tensor([0, 4, 2, 1])

    def weighted_mean(weight):  # PyTorch's weighted mean, written out
        nll = -torch.log_softmax(z, 1).gather(1, t[:, None]).squeeze(1)
        return (weight[t] * nll).sum() / weight[t].sum()

    with fwAD.dual_level():
        got = fwAD.unpack_dual(crossent.cross_entropy(z, fwAD.make_dual(p, dp))).tangent
        expected = fwAD.unpack_dual(F.cross_entropy(z, fwAD.make_dual(p, dp))).tangent
        torch.testing.assert_close(got, expected)
        got = fwAD.unpack_dual(crossent.cross_entropy(z, t, weight=fwAD.make_dual(w, dw)))
    torch.testing.assert_close(got.tangent, torch.func.jvp(weighted_mean, (w,), (dw,))[1])


BATCHED_PAIRS = [
    ("ce", crossent.cross_entropy, F.cross_entropy, "index"),
    ("bce", crossent.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, "bin"),
    ("focal", crossent.focal_loss, None, "index"),
    ("sigmoid_focal", crossent.sigmoid_focal_loss, None, "bin"),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,ours,theirs,kind", BATCHED_PAIRS)
def test_batched_backward_matches_a_loop(name, ours, theirs, kind, reduction):
    """``is_grads_batched`` and ``jacobian(vectorize=True)`` on float32 losses (the issue's
    calls), equal to one backward per upstream gradient and to PyTorch where it has the loss."""
    z = torch.randn(5, 4)
    if kind == "index":
        t = torch.randint(0, 4, (5,))
    else:
        t = (torch.rand(5, 4) < 0.5).float()
    x = z.clone().requires_grad_()
    out = ours(x, t, reduction=reduction)
    v = torch.randn(3, *out.shape)
    (batched,) = torch.autograd.grad(out, x, v, is_grads_batched=True)
    for vi, gi in zip(v, batched, strict=True):
        xi = z.clone().requires_grad_()
        (expected,) = torch.autograd.grad(ours(xi, t, reduction=reduction), xi, vi)
        torch.testing.assert_close(gi, expected)
        if theirs is not None:
            xi = z.clone().requires_grad_()
            (ref,) = torch.autograd.grad(theirs(xi, t, reduction=reduction), xi, vi)
            torch.testing.assert_close(gi, ref)
    jac = torch.autograd.functional.jacobian(
        lambda a: ours(a, t, reduction=reduction), z, vectorize=True
    )
    assert jac.shape == (*out.shape, *z.shape)


def test_batched_backward_in_place_mode():
    """``inplace_backward=True``: a batched backward scales the stored gradient out of place."""
    base = torch.randn(5, 4, requires_grad=True)
    t = torch.randint(0, 4, (5,))
    out = crossent.cross_entropy(base * 1.0, t, inplace_backward=True)
    v = torch.tensor([1.0, 2.0, -0.5])
    (batched,) = torch.autograd.grad(out, base, v, is_grads_batched=True)
    (ref,) = torch.autograd.grad(F.cross_entropy(base, t), base)
    torch.testing.assert_close(batched, v[:, None, None] * ref)
