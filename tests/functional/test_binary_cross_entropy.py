"""binary_cross_entropy_with_logits against PyTorch and the reference."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import crossent
from tests import reference


@pytest.mark.parametrize(
    "reduction,eps,weighted,pos",
    list(itertools.product(["none", "mean", "sum"], [0, 0.2], [0, 1], [0, 1])),
)
def test_matches_pytorch(reduction, eps, weighted, pos):
    x = (4 * torch.randn(6, 3, dtype=torch.float64)).requires_grad_()
    y = torch.rand(6, 3, dtype=torch.float64)
    w = torch.rand(6, 1, dtype=torch.float64) if weighted else None
    pw = torch.rand(3, dtype=torch.float64) + 0.5 if pos else None
    ours = crossent.binary_cross_entropy_with_logits(
        x, y, weight=w, pos_weight=pw, reduction=reduction, label_smoothing=eps
    )
    theirs = F.binary_cross_entropy_with_logits(
        x, y * (1 - eps) + eps / 2, weight=w, pos_weight=pw, reduction=reduction
    )
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(theirs.sum(), x)[0]
    )


def test_against_reference_and_gradcheck():
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(10) > 0.5).double()
    pw = torch.tensor(2.0, dtype=torch.float64)
    ours = crossent.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    torch.testing.assert_close(
        ours, reference.binary_cross_entropy_with_logits(x, y, pos_weight=pw)
    )
    assert torch.autograd.gradcheck(
        lambda x: crossent.binary_cross_entropy_with_logits(x, y, pos_weight=pw), (x,)
    )


def test_equals_two_class_cross_entropy():
    z = torch.randn(12, dtype=torch.float64)
    y = torch.randint(0, 2, (12,))
    two = torch.stack([torch.zeros_like(z), z], 1)
    torch.testing.assert_close(
        crossent.binary_cross_entropy_with_logits(z, y.double()), crossent.cross_entropy(two, y)
    )


def test_target_gradient_matches_pytorch():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, dtype=torch.float64, requires_grad=True)
    a = torch.autograd.grad(crossent.binary_cross_entropy_with_logits(x, y), (x, y))
    b = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y), (x, y))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_extreme_logits_finite(dtype):
    x = torch.tensor([-1e4, 1e4, 0.0, 30.0, -30.0]).to(dtype).requires_grad_()
    loss = crossent.binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0, 1, 1, 0]).to(dtype))
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_module_equals_function():
    x, y = torch.randn(4, 3), torch.rand(4, 3)
    pw = torch.ones(3) * 2
    m = crossent.nn.BCEWithLogitsLoss(pos_weight=pw, label_smoothing=0.1)
    torch.testing.assert_close(
        m(x, y), crossent.binary_cross_entropy_with_logits(x, y, pos_weight=pw, label_smoothing=0.1)
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted,pos", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_hard_and_soft_blocks_match_pytorch(monkeypatch, reduction, weighted, pos):
    # Blocks of 0/1 labels take the one-term fast path, blocks with a soft label the general
    # one; small blocks make one call mix both.
    monkeypatch.setattr("crossent.engine.binary.BLOCK_ELEMENTS", 12)
    g = torch.Generator().manual_seed(1)
    x = (5 * torch.randn(16, 4, generator=g, dtype=torch.float64)).requires_grad_()
    y = (torch.rand(16, 4, generator=g) < 0.4).double()
    y[9, 2] = 0.3  # rows 9-11 form a soft block
    x.data[0, 0], y[0, 0] = 1e4, 0.0  # a saturated wrong label on the fast path
    w = torch.rand(16, 1, generator=g, dtype=torch.float64) if weighted else None
    if w is not None:
        w[3] = 0.0
    pw = torch.rand(4, generator=g, dtype=torch.float64) + 0.5 if pos else None
    ours = crossent.binary_cross_entropy_with_logits(
        x, y, weight=w, pos_weight=pw, reduction=reduction
    )
    theirs = F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(theirs.sum(), x)[0]
    )


def test_hard_labels_with_zero_weight_and_infinite_logit_give_zero():
    x = torch.tensor([[float("inf"), 1.0], [2.0, -1.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    w = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    loss = crossent.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none")
    assert loss[0, 0].item() == 0.0
    assert torch.isfinite(loss).all()


@pytest.mark.parametrize("y", [1.0, 0.3])
def test_zero_dim_input_with_a_target_that_requires_grad_matches_pytorch(y):
    # the differentiable path took rows of a 0-dim tensor (IndexError before)
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    t_ours = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    t_theirs = t_ours.detach().clone().requires_grad_()
    ours = crossent.binary_cross_entropy_with_logits(x, t_ours)
    theirs = F.binary_cross_entropy_with_logits(x, t_theirs)
    torch.testing.assert_close(ours, theirs)
    ours_grads = torch.autograd.grad(ours, (x, t_ours))
    torch.testing.assert_close(ours_grads, torch.autograd.grad(theirs, (x, t_theirs)))
    focal = crossent.sigmoid_focal_loss(x, t_ours)
    assert torch.isfinite(torch.autograd.grad(focal, t_ours)[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("y", [1.0, 0.3])
def test_zero_dim_input_matches_pytorch(reduction, y):
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(y, dtype=torch.float64)
    kw = {"pos_weight": torch.tensor(3.0, dtype=torch.float64), "reduction": reduction}
    ours = crossent.binary_cross_entropy_with_logits(x, t, **kw)
    theirs = F.binary_cross_entropy_with_logits(x, t, **kw)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours, x), torch.autograd.grad(theirs, x))
