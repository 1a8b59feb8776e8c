"""The fused linear functions under autograd transforms, for every registry loss.

``linear_loss(input, weight, target, name, linear_bias=...)`` for each registry name, float64,
a few rows over several chunks: ``gradcheck`` with batched gradients (``vmap`` over the
backward pass) and forward-mode AD, for ``mean`` and ``none``; ``is_grads_batched`` and a
dual tensor through ``linear_cross_entropy`` against the unfused PyTorch layer.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.autograd import gradcheck

import crossent
from crossent import registry
from crossent.linear import linear_loss

N, H, C = 5, 3, 4
D = torch.float64


def _case(name, seed=0):
    """``(x, w, b)`` and the target of the kind ``name`` takes."""
    g = torch.Generator().manual_seed(seed)
    kind = registry.loss_kind(name)
    out = (2, 2) if kind == "overlap" else ()
    x = torch.randn(N if not out else 2, H, generator=g, dtype=D)
    w = torch.randn(C, *out, H, generator=g, dtype=D)
    b = torch.randn(C, *out, generator=g, dtype=D)
    if kind == "binary":
        target = (torch.rand(N, C, generator=g) < 0.5).to(D)
    elif kind == "distillation":
        target = torch.randn(N, C, generator=g, dtype=D)
    else:
        target = torch.randint(0, C, (x.shape[0], *out), generator=g)
    return (x, w, b), target


def _reductions(name):
    return ["mean"] if registry.loss_kind(name) == "overlap" else ["mean", "none"]


CASES = [(n, r) for n in registry.available_losses() for r in _reductions(n)]


@pytest.mark.parametrize("name,reduction", CASES)
def test_linear_loss_gradcheck_batched_and_forward_ad(name, reduction):
    operands, target = _case(name)

    def f(x, w, b):
        return linear_loss(x, w, target, name, linear_bias=b, chunk_size=2, reduction=reduction)

    inputs = tuple(a.requires_grad_() for a in operands)
    assert gradcheck(f, inputs, check_batched_grad=True, check_forward_ad=True, fast_mode=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_batched_backward_and_tangent_match_pytorch(reduction):
    (x, w, b), t = _case("ce")
    x32, w32, b32 = (a.float().requires_grad_() for a in (x, w, b))

    def ours(x, w, b):
        return crossent.linear_cross_entropy(
            x, w, t, linear_bias=b, reduction=reduction, chunk_size=2
        )

    def theirs(x, w, b):
        return F.cross_entropy(F.linear(x, w, b), t, reduction=reduction)

    out = ours(x32, w32, b32)
    v = torch.randn(3, *out.shape)
    got = torch.autograd.grad(out, (x32, w32, b32), v, is_grads_batched=True)
    expected = torch.autograd.grad(theirs(x32, w32, b32), (x32, w32, b32), v, is_grads_batched=True)
    torch.testing.assert_close(got, expected)
    tangents = tuple(torch.randn_like(a) for a in (x32, w32, b32))
    with fwAD.dual_level():
        pairs = zip((x32, w32, b32), tangents, strict=True)
        duals = [fwAD.make_dual(a.detach(), da) for a, da in pairs]
        ours_t = fwAD.unpack_dual(ours(*duals)).tangent
        theirs_t = fwAD.unpack_dual(theirs(*duals)).tangent
    assert ours_t is not None, "forward-mode AD dropped the tangent"
    torch.testing.assert_close(ours_t, theirs_t)
