"""The autograd contract of DESIGN §1, checked against PyTorch."""

import pytest
import torch
import torch.nn.functional as F

import crossent
from crossent import engine


def _pair(shape=(5, 7), dtype=torch.float64):
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    t = torch.randint(0, shape[1], (shape[0],))
    return x, t


def test_no_gradient_work_under_no_grad(monkeypatch):
    calls = []
    original = engine.forward_pass

    def spy(z, targets, opts, want_grad):
        calls.append(want_grad)
        return original(z, targets, opts, want_grad)

    monkeypatch.setattr(engine, "forward_pass", spy)
    x, t = _pair()
    with torch.no_grad():
        loss = crossent.cross_entropy(x, t)
    assert calls == [False]
    assert not loss.requires_grad
    crossent.cross_entropy(x.detach(), t)
    assert calls == [False, False]
    crossent.cross_entropy(x, t)
    assert calls[-1] is True


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_retain_graph_second_backward(reduction, eps):
    x, t = _pair()
    loss = crossent.cross_entropy(x, t, reduction=reduction, label_smoothing=eps).sum() * 3
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    (expected,) = torch.autograd.grad(
        F.cross_entropy(x, t, reduction=reduction, label_smoothing=eps).sum() * 3, x
    )
    torch.testing.assert_close(first, expected)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_double_backward_matches_pytorch(eps):
    x, t = _pair()
    v = torch.randn_like(x)
    ours = crossent.cross_entropy(x, t, label_smoothing=eps)
    (g,) = torch.autograd.grad(ours, x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    theirs = F.cross_entropy(x, t, label_smoothing=eps)
    (g2,) = torch.autograd.grad(theirs, x, create_graph=True)
    (hv2,) = torch.autograd.grad((g2 * v).sum(), x)
    torch.testing.assert_close(g, g2)
    torch.testing.assert_close(hv, hv2)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_probability_target_gradient_matches_pytorch(eps):
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(4, 6, 3, dtype=torch.float64), 1).requires_grad_()
    w = torch.rand(6, dtype=torch.float64)
    ours = crossent.cross_entropy(x, p, weight=w, label_smoothing=eps)
    theirs = F.cross_entropy(x, p, weight=w, label_smoothing=eps)
    torch.testing.assert_close(ours, theirs)
    a = torch.autograd.grad(ours, (x, p))
    b = torch.autograd.grad(theirs, (x, p))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_scaled_loss_scales_the_gradient_without_touching_the_stored_one():
    x, t = _pair()
    loss = crossent.cross_entropy(x, t)
    (loss * 0.5).backward(retain_graph=True)
    half = x.grad.clone()
    x.grad = None
    loss.backward()
    torch.testing.assert_close(half * 2, x.grad)


class TestInplaceBackward:
    def test_gradient_equals_default_and_uses_logits_storage(self):
        base = torch.randn(6, 9, requires_grad=True)
        t = torch.randint(0, 9, (6,))
        (expected,) = torch.autograd.grad(F.cross_entropy(base, t, label_smoothing=0.1), base)
        logits = base * 1.0
        ptr = logits.data_ptr()
        loss = crossent.cross_entropy(logits, t, label_smoothing=0.1, inplace_backward=True)
        assert logits.data_ptr() == ptr
        torch.testing.assert_close(logits.detach(), expected)  # the logits now hold dL/dlogits
        loss.backward()
        torch.testing.assert_close(base.grad, expected)

    def test_version_counter_bumped_so_saved_uses_fail(self):
        base = torch.randn(4, 5, requires_grad=True)
        logits = base * 1.0
        saved_input = torch.sin(logits)  # sin saves its input for backward
        version = logits._version
        loss = crossent.cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace_backward=True)
        assert logits._version > version
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            (loss + saved_input.sum()).backward()

    def test_second_backward_raises(self):
        logits = torch.randn(4, 5, requires_grad=True) * 1.0
        loss = crossent.cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace_backward=True)
        loss.backward(retain_graph=True)
        with pytest.raises(RuntimeError, match="second backward"):
            loss.backward()

    def test_under_no_grad_leaves_logits_untouched(self):
        logits = torch.randn(4, 5)
        before = logits.clone()
        with torch.no_grad():
            crossent.cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace_backward=True)
        assert torch.equal(logits, before)

    def test_bf16_inplace(self):
        base = torch.randn(8, 33, requires_grad=True)
        t = torch.randint(0, 33, (8,))
        logits = base.bfloat16()
        loss = crossent.cross_entropy(logits, t, inplace_backward=True)
        loss.backward()
        (expected,) = torch.autograd.grad(F.cross_entropy(base.bfloat16().float(), t), base)
        torch.testing.assert_close(base.grad, expected, atol=2e-3, rtol=2e-2)
