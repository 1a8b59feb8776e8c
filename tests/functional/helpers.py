"""Inputs and comparisons shared by the loss-family tests."""

import torch


def inputs(n=7, k=5, *, seed=0, scale=2.0, ignore_index=None, dtype=torch.float64):
    """Logits ``(n, k)`` that require grad and class indices, the first one ignored."""
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(n, k, generator=g, dtype=dtype)).requires_grad_()
    t = torch.randint(0, k, (n,), generator=g)
    if ignore_index is not None:
        t[0] = ignore_index
    return x, t


def soft_targets(n=7, k=5, *, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)


def value_and_grad(fn, x):
    """``fn(x)`` and its gradient with respect to ``x`` (a fresh leaf copy)."""
    x = x.detach().clone().requires_grad_()
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def assert_matches(fn, ref, x, rtol=1e-9, atol=1e-10):
    """Values and gradients of ``fn`` equal those of the float64 reference ``ref``."""
    got, got_grad = value_and_grad(fn, x)
    want, want_grad = value_and_grad(ref, x)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=rtol, atol=atol)
    torch.testing.assert_close(got_grad, want_grad.to(got_grad.dtype), rtol=rtol, atol=atol)
