"""Engine options through the kernel: reductions, ignore_index, z-loss, K, dtypes, extremes."""

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import torch

import crossent
from crossent.terms import CrossEntropyTerm, FocalTerm, MAETerm
from tests.kernels._util import DEVICE, assert_matches, kernel_only, run_kernel

CE, FOCAL, MAE = CrossEntropyTerm(), FocalTerm(2.0), MAETerm()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("term", [CE, FOCAL, MAE], ids=repr)
@pytest.mark.parametrize("z_loss", [0.0, 0.01])
def test_reductions_ignore_index_and_z_loss(reduction, term, z_loss, layout):
    z = 3 * torch.randn(6, 21)
    t = torch.randint(0, 21, (6,))
    t[[0, 4]] = 3  # ignore_index = 3 (a valid class index)
    kw = {"reduction": reduction, "ignore_index": 3, "z_loss": z_loss, "weight": torch.rand(21)}
    assert_matches(z, t, term, **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_all_ignored_gives_zero_loss_and_gradient(reduction, eps):
    z = torch.randn(4, 9)
    t = torch.full((4,), -100)
    loss, grad = assert_matches(z, t, FOCAL, reduction=reduction, label_smoothing=eps)
    assert torch.all(loss == 0) and torch.all(grad == 0)


def test_zero_target_weights_give_zero_mean():
    z, t = torch.randn(4, 9), torch.tensor([1, 2, 1, 2])
    weight = torch.ones(9)
    weight[[1, 2]] = 0
    loss, grad = assert_matches(z, t, CE, weight=weight)
    assert float(loss) == 0 and torch.all(grad == 0)


@pytest.mark.parametrize("k", [1, 2, 3, 1000])
@pytest.mark.parametrize("term", [CE, MAE], ids=repr)
def test_odd_numbers_of_classes(k, term):
    z = 2 * torch.randn(3, k)
    t = torch.randint(0, k, (3,))
    assert_matches(z, t, term)
    assert_matches(z, t, term, label_smoothing=0.1, reduction="sum")
    assert_matches(z, torch.softmax(torch.randn(3, k), 1), term)


def test_k_dimensional_input_and_non_contiguous_logits():
    z = torch.randn(2, 5, 3, 4)
    t = torch.randint(0, 5, (2, 3, 4))
    t[0, 1, 2] = -100
    assert_matches(z, t, CE, reduction="none")
    assert_matches(z, t, FOCAL, label_smoothing=0.1, weight=torch.rand(5))
    assert_matches(z, torch.softmax(torch.randn_like(z), 1), MAE)
    assert_matches(torch.randn(7, 5).t(), torch.randint(0, 7, (5,)), CE)


def test_class_scale_multiplies_without_entering_the_mean():
    z, t = torch.randn(5, 8), torch.randint(0, 8, (5,))
    alpha = torch.rand(8)
    assert_matches(z, t, FOCAL, class_scale=alpha, weight=torch.rand(8) + 0.5)
    assert_matches(z, t, FOCAL, class_scale=alpha, label_smoothing=0.1)


def test_strided_and_expanded_class_weights_are_read_by_class(layout):
    # the kernel indexes the weight vector by class: a view with stride 2 or 0 was read as
    # if contiguous (wrong losses; out-of-bounds reads for an expanded vector)
    z, t = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    strided = torch.arange(1.0, 11.0)[::2]
    expanded = torch.full((1,), 2.0).expand(5)
    assert_matches(z, t, CE, weight=strided, label_smoothing=0.1)
    assert_matches(z, torch.softmax(torch.randn_like(z), 1), MAE, weight=strided)
    assert_matches(z, t, FOCAL, class_scale=strided, weight=expanded, label_smoothing=0.1)
    assert_matches(z, t, MAE, weight=expanded)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_logits_compute_in_float32(dtype):
    z = (3 * torch.randn(4, 300)).to(dtype)
    t = torch.randint(0, 300, (4,))
    # the gradient is rounded once to the input dtype: 2 ulps of bf16 apart at most
    tol = {"rtol": 1e-3, "atol": 1e-4, "grad_rtol": 1.6e-2, "grad_atol": 2e-5}
    loss, grad = assert_matches(z, t, CE, **tol)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_matches(z, t, FOCAL, label_smoothing=0.1, **tol)


def test_extreme_logits_stay_finite(layout):
    z = torch.randn(5, 40) * 1e4
    z[0, 5] = float("-inf")  # a masked class: probability 0, gradient 0
    z[2, :] = float("-inf")  # a fully masked row
    t = torch.tensor([1, 2, 3, 4, 5])
    z[3, 4] = float("-inf")  # a masked target: loss inf (as PyTorch), gradient finite
    for term in (CE, FOCAL):
        loss, grad = assert_matches(z, t, term, reduction="none")
        assert grad[0, 5] == 0
        assert torch.isinf(loss[3]) and torch.isfinite(loss[[0, 1, 4]]).all()
    for term in (FOCAL, MAE):  # smoothing puts target mass on the masked class: loss inf
        assert_matches(z, t, term, reduction="none", label_smoothing=0.1)


def test_saturated_target_is_formed_in_float32():
    # q_t -> 1 in bf16: the target column w_t G_t (1 - q_t) is formed in float32 with
    # 1 - q_t = -expm1(s_t) and rounded once; rounding q_t to bf16 first would give 0
    z = torch.tensor([[10.0, 0.0, 0.0]], dtype=torch.bfloat16)
    _, grad = run_kernel(z, torch.tensor([0]), CE, upstream=False)
    one_minus_q = 1 - 1 / (1 + 2 * torch.exp(torch.tensor(-10.0, dtype=torch.float64)))
    assert grad[0, 0].item() == pytest.approx(-one_minus_q.item(), rel=1e-2)


def test_no_grad_computes_the_loss_only():
    z = torch.randn(4, 10, device=DEVICE, requires_grad=True)
    t = torch.randint(0, 10, (4,), device=DEVICE)
    with torch.no_grad(), kernel_only():
        loss = crossent.cross_entropy(z, t)
    assert not loss.requires_grad
    ref = torch.nn.functional.cross_entropy(z.detach().cpu(), t.cpu())
    torch.testing.assert_close(loss.cpu(), ref)


def test_retain_graph_second_backward_is_equal_and_logits_untouched():
    z = torch.randn(4, 10, device=DEVICE, requires_grad=True)
    before = z.detach().clone()
    t = torch.randint(0, 10, (4,), device=DEVICE)
    with kernel_only():
        loss = crossent.cross_entropy(z, t, label_smoothing=0.1)
    (g1,) = torch.autograd.grad(loss, z, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(g1, g2)
    assert torch.equal(z.detach(), before)  # float32 logits are never written unasked


def test_double_backward_raises_a_clear_error():
    z = torch.randn(3, 5, device=DEVICE, requires_grad=True)
    with kernel_only():
        loss = crossent.cross_entropy(z, torch.tensor([0, 1, 2], device=DEVICE))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, z, create_graph=True)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_z_loss_applies_to_zero_weight_classes(eps, layout):
    z, t = torch.randn(5, 9), torch.tensor([1, 2, 1, -100, 4])
    weight = torch.ones(9)
    weight[1] = 0
    kw = {"weight": weight, "z_loss": 0.1, "label_smoothing": eps, "reduction": "none"}
    loss, _ = assert_matches(z, t, CE, **kw)
    assert loss[0] > 0 and loss[3] == 0  # class weight 0: z-loss only; ignored: nothing
