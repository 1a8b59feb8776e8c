"""The fused linear functions inside ``torch.compile(..., fullgraph=True)`` on CPU.

One compiled step holds every case (the compiler runs once): ``linear_cross_entropy`` with a
bias, smoothing and the ``mean`` and ``none`` reductions over several chunks, ``linear_loss``
with an engine term (focal, chunked in the graph) and with a loss that is not one (NLL, the
loss on the full logits). Values and the gradients of input, weight and bias equal the eager
fused path; the chunk size is chosen while tracing without querying the free memory.
"""

import torch

import crossent
from crossent.linear import linear_loss


def _operands(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(6, 4, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(6, generator=g, dtype=dtype).requires_grad_()
    t = torch.randint(0, 6, (10,), generator=g)
    t[3] = -100
    return x, w, b, t


def step(x, w, b, t):
    rows = torch.linspace(0.5, 1.5, 10, dtype=x.dtype)
    losses = [
        crossent.linear_cross_entropy(x, w, t, linear_bias=b, label_smoothing=0.1, chunk_size=3),
        (crossent.linear_cross_entropy(x, w, t, reduction="none", chunk_size=4) * rows).sum(),
        crossent.linear_cross_entropy(x, w, t),  # the chunk size chosen while tracing
        linear_loss(x, w, t, "focal", linear_bias=b, chunk_size=3),
        linear_loss(torch.log_softmax(x, 1), w, t, "nll", chunk_size=3),
    ]
    return torch.stack(losses)


def test_linear_losses_compile_with_fullgraph():
    x, w, b, t = _operands()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(x, w, b, t)
    got_grads = torch.autograd.grad(got.sum(), (x, w, b))
    expected = step(x, w, b, t)
    expected_grads = torch.autograd.grad(expected.sum(), (x, w, b))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grads, expected_grads)


def test_linear_cross_entropy_compiles_with_inductor_in_half_precision():
    """The default backend generates code for the chunk loop; bf16 with a float32 loss."""
    x, w, b, t = (a.detach() for a in _operands(torch.float32))
    x, w, b = (a.to(torch.bfloat16).requires_grad_() for a in (x, w, b))

    def f(x, w, b):
        return crossent.linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=4)

    got = torch.compile(f, fullgraph=True)(x, w, b)
    got_grads = torch.autograd.grad(got, (x, w, b))
    expected = f(x, w, b)
    expected_grads = torch.autograd.grad(expected, (x, w, b))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    for a, e in zip(got_grads, expected_grads, strict=True):
        assert a.dtype == e.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), e.float(), rtol=2e-2, atol=2e-3)
