"""inplace_backward=True: the gradient written over the logits, the version counter bumped."""

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import torch

import crossent
from crossent.engine import term_loss
from crossent.terms import CrossEntropyTerm, FocalTerm
from tests.kernels._util import DEVICE, grad_output, kernel_only


def _pair(n=6, k=33, dtype=torch.float32):
    z = (3 * torch.randn(n, k)).to(device=DEVICE, dtype=dtype)
    t = torch.randint(0, k, (n,), device=DEVICE)
    t[2] = -100
    return z, t


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("term", "upstream"), [(CrossEntropyTerm(), False), (FocalTerm(2.0), True)], ids=["ce", "focal"]
)
def test_inplace_gradient_equals_the_stored_one(reduction, upstream, term, layout):
    z, t = _pair()
    kw = {"reduction": reduction, "label_smoothing": 0.1 if upstream else 0.0}
    x = z.clone().requires_grad_()
    with kernel_only():
        ref = term_loss(x, t, term, **kw)
    go = grad_output(ref) if upstream else torch.ones_like(ref)
    (expected,) = torch.autograd.grad(ref, x, go)
    y = z.clone().requires_grad_() * 1.0  # logits made by an operation (a leaf is kept)
    ptr = y.data_ptr()
    with kernel_only():
        loss = term_loss(y, t, term, inplace_backward=True, **kw)
    torch.testing.assert_close(loss, ref.detach())
    (grad,) = torch.autograd.grad(loss, y, go)
    assert grad.data_ptr() == ptr  # no new buffer
    torch.testing.assert_close(grad, expected)


def test_inplace_bumps_the_version_counter():
    z, t = _pair(dtype=torch.bfloat16)
    x = z.requires_grad_()
    logits = x * 1.0
    before = logits._version
    with kernel_only():
        crossent.cross_entropy(logits, t, inplace_backward=True)
    assert logits._version > before


def test_pytorch_raises_when_another_operation_saved_the_logits():
    z, t = _pair()
    x = z.requires_grad_()
    logits = x * 2.0
    other = logits.sin()  # sin saves its input for backward
    with kernel_only():
        loss = crossent.cross_entropy(logits, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + other.sum()).backward()


def test_second_backward_through_inplace_raises():
    z, t = _pair()
    x = z.requires_grad_()
    logits = x * 1.0
    with kernel_only():
        loss = crossent.cross_entropy(logits, t, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()


def test_k_dimensional_inplace():
    z = torch.randn(2, 5, 3, device=DEVICE)
    t = torch.randint(0, 5, (2, 3), device=DEVICE)
    x = z.clone().requires_grad_()
    with kernel_only():
        (expected,) = torch.autograd.grad(crossent.cross_entropy(x, t), x)
    y = z.clone().requires_grad_()
    with kernel_only():
        (grad,) = torch.autograd.grad(crossent.cross_entropy(y, t, inplace_backward=True), y)
    torch.testing.assert_close(grad, expected)
