"""nll_loss: log-probabilities in, equal to PyTorch's."""

import pytest
import torch
import torch.nn.functional as F

import crossent.nn
from crossent.functional import cross_entropy, nll_loss
from tests import reference


@pytest.mark.parametrize("weight", [None, torch.tensor([0.5, 1.0, 2.0, 0.0], dtype=torch.float64)])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("normalised", [True, False])
def test_equals_pytorch(weight, ignore_index, reduction, normalised):
    x = torch.randn(8, 4, dtype=torch.float64) * 3
    if normalised:
        x = F.log_softmax(x, 1)
    x.requires_grad_()
    t = torch.randint(0, 4, (8,))
    t[0] = ignore_index
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction)
    got = nll_loss(x, t, **kw)
    want = F.nll_loss(x, t, **kw)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.detach(), reference.nll_loss(x.detach(), t, **kw))
    (g1,) = torch.autograd.grad(got.sum(), x)
    (g2,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g2)


def test_kdim_and_unbatched_equal_pytorch():
    x = torch.randn(2, 5, 3, 4, requires_grad=True)
    t = torch.randint(0, 5, (2, 3, 4))
    t[0, 0, 0] = -100
    w = torch.rand(5)
    for reduction in ("none", "mean", "sum"):
        got = nll_loss(x, t, weight=w, reduction=reduction)
        torch.testing.assert_close(got, F.nll_loss(x, t, weight=w, reduction=reduction))
    v = torch.randn(5)
    torch.testing.assert_close(nll_loss(v, torch.tensor(3)), F.nll_loss(v, torch.tensor(3)))


def test_on_log_softmax_equals_cross_entropy_on_logits():
    z = torch.randn(6, 7)
    t = torch.randint(0, 7, (6,))
    torch.testing.assert_close(nll_loss(F.log_softmax(z, 1), t), cross_entropy(z, t))


def test_all_ignored_gives_zero_and_module():
    x = torch.randn(3, 4, requires_grad=True)
    t = torch.full((3,), -100)
    assert nll_loss(x, t).item() == 0.0
    m = crossent.nn.NLLLoss(weight=torch.ones(4), reduction="sum")
    t2 = torch.tensor([0, 1, 2])
    assert m(x, t2).item() == pytest.approx(F.nll_loss(x, t2, reduction="sum").item())


def test_bad_input_raises():
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match="class indices"):
        nll_loss(x, torch.rand(3, 4))
    with pytest.raises(ValueError, match="out of range"):
        nll_loss(x, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="reduction"):
        nll_loss(x, torch.tensor([0, 1, 2]), reduction="avg")
