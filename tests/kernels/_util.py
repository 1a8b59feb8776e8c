"""Helpers of the kernel tests: run a call through the kernel and through the engine."""

from contextlib import contextmanager

import torch

from crossent import kernels
from crossent.engine import multiclass as engine
from crossent.engine import term_loss

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def grad_output(loss):
    """A non-trivial upstream gradient (not 1, so scaling is exercised)."""
    if loss.dim() == 0:
        return torch.tensor(0.75, device=loss.device)
    return torch.linspace(0.5, 1.5, loss.numel(), device=loss.device).reshape(loss.shape)


@contextmanager
def kernel_only():
    """Fail if a call falls back to the PyTorch engine (so a comparison is not vacuous)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the call fell back to the PyTorch engine")

    original, engine.run = engine.run, refuse
    try:
        yield
    finally:
        engine.run = original


def run_kernel(z, target, term, upstream=True, **kw):
    """Loss and logits' gradient through the kernel (on DEVICE)."""
    kw = {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    x = z.detach().to(DEVICE).requires_grad_()
    with kernel_only():
        loss = term_loss(x, target.to(DEVICE), term, **kw)
    go = grad_output(loss) if upstream else torch.ones_like(loss)
    (grad,) = torch.autograd.grad(loss, x, go)
    return loss.detach().cpu(), grad.cpu()


def run_engine(z, target, term, upstream=True, **kw):
    """The same call through the PyTorch engine on CPU (the oracle)."""
    kw = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    previous = kernels.get_backend()
    kernels.set_backend("torch")
    try:
        x = z.detach().cpu().requires_grad_()
        loss = term_loss(x, target.cpu(), term, **kw)
        go = grad_output(loss) if upstream else torch.ones_like(loss)
        (grad,) = torch.autograd.grad(loss, x, go)
    finally:
        kernels.set_backend(previous)
    return loss.detach(), grad


def assert_matches(z, target, term, rtol=2e-5, atol=2e-6, grad_atol=None, grad_rtol=None, **kw):
    """Kernel and engine agree on the loss and the gradient (float rounding)."""
    loss, grad = run_kernel(z, target, term, **kw)
    ref_loss, ref_grad = run_engine(z, target, term, **kw)
    assert loss.dtype == ref_loss.dtype
    assert grad.dtype == z.dtype
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=atol)
    torch.testing.assert_close(
        grad.float(),
        ref_grad.float(),
        rtol=rtol if grad_rtol is None else grad_rtol,
        atol=atol if grad_atol is None else grad_atol,
    )
    assert torch.isfinite(grad.float()).all()
    return loss, grad
