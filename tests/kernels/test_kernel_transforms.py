"""The Triton kernel's autograd under transforms: batched backward, forward-mode AD.

A backward pass under ``vmap`` (``is_grads_batched=True``) cannot hand batched tensors to a
launch: the kernel forms the gradient for a unit upstream gradient and scales it out of
place. Forward-mode AD and class weights that require grad leave the kernel for the
differentiable formula (the kernel's gradient has no tangent and no class-weight part).
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

import crossent
from tests.kernels._util import DEVICE, kernel_only


@pytest.mark.parametrize("inplace", [False, True], ids=["saved_stats", "inplace"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_batched_backward_through_the_kernel(inplace, reduction):
    base = torch.randn(6, 5, device=DEVICE, requires_grad=True)
    t = torch.randint(0, 5, (6,), device=DEVICE)
    with kernel_only():
        out = crossent.cross_entropy(
            base * 1.0, t, reduction=reduction, label_smoothing=0.1, inplace_backward=inplace
        )
        v = torch.randn(3, *out.shape, device=DEVICE)
        (got,) = torch.autograd.grad(out, base, v, is_grads_batched=True)
    ref = F.cross_entropy(base, t, reduction=reduction, label_smoothing=0.1)
    (expected,) = torch.autograd.grad(ref, base, v, is_grads_batched=True)
    torch.testing.assert_close(got, expected)


def test_forward_ad_and_class_weight_gradients_leave_the_kernel():
    z = torch.randn(4, 5, device=DEVICE)
    t = torch.randint(0, 5, (4,), device=DEVICE)
    dz = torch.randn_like(z)
    with fwAD.dual_level():
        ours = fwAD.unpack_dual(crossent.focal_loss(fwAD.make_dual(z, dz), t)).tangent
    expected = torch.func.jvp(lambda a: crossent.focal_loss(a, t), (z,), (dz,))[1]
    assert ours is not None
    torch.testing.assert_close(ours, expected)
    w = torch.rand(5, device=DEVICE, requires_grad=True)
    (got,) = torch.autograd.grad(crossent.cross_entropy(z, t, weight=w), w)
    crossent.kernels.set_backend("torch")  # the engine's formula, the reference
    (expected,) = torch.autograd.grad(crossent.cross_entropy(z, t, weight=w), w)
    torch.testing.assert_close(got, expected)
