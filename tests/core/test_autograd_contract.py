"""The autograd contract of DESIGN §1, checked against PyTorch."""

import pytest
import torch
import torch.nn.functional as F

import crossent
from crossent.engine import multiclass as engine


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


LOSS_PAIRS = [
    ("ce", crossent.cross_entropy, F.cross_entropy, False),
    ("ce_unbatched", crossent.cross_entropy, F.cross_entropy, False),
    ("bce", crossent.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, True),
]


@pytest.mark.parametrize("name,ours,theirs,binary", LOSS_PAIRS)
def test_many_retained_backwards_and_grad_edits_match_pytorch(name, ours, theirs, binary):
    """``.grad`` shares no storage with what the graph keeps: editing it between retained
    backwards (as ``optimizer.zero_grad(set_to_none=False)`` does) changes nothing else."""
    x = torch.randn(7 if name.endswith("unbatched") else (5, 7), dtype=torch.float64)
    x.requires_grad_()
    if binary:
        t = torch.rand(x.shape, dtype=torch.float64)
    else:
        t = torch.randint(0, 7, x.shape[:-1]) if x.dim() == 2 else torch.tensor(3)
    (expected,) = torch.autograd.grad(theirs(x, t), x)
    loss = ours(x, t)
    for k in range(1, 4):
        loss.backward(retain_graph=True)
        torch.testing.assert_close(x.grad, k * expected)
    x.grad.zero_()
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, expected)
    x.grad.mul_(7.0)
    x.grad = None
    loss.backward()
    torch.testing.assert_close(x.grad, expected)


def test_logits_are_released_after_backward():
    import gc
    import weakref

    x, t = _pair()
    logits = x * 2.0
    alive = weakref.ref(logits)
    loss = crossent.cross_entropy(logits, t)
    del logits
    loss.backward()
    gc.collect()
    assert alive() is None  # PyTorch's own cross-entropy frees them too


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_one_hot_probability_target_gradient_matches_pytorch_where_target_is_zero(eps):
    x, t = _pair()
    p = F.one_hot(t, x.shape[1]).to(x.dtype).requires_grad_()
    a = torch.autograd.grad(crossent.cross_entropy(x, p, label_smoothing=eps), (x, p))
    b = torch.autograd.grad(F.cross_entropy(x, p, label_smoothing=eps), (x, p))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pos_weight", [False, True])
def test_binary_target_gradient_matches_pytorch_for_hard_labels(pos_weight):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (4, 6)).to(x.dtype).requires_grad_()
    kw = {"pos_weight": torch.rand(6, dtype=torch.float64) + 0.5} if pos_weight else {}
    a = torch.autograd.grad(crossent.binary_cross_entropy_with_logits(x, y, **kw), (x, y))
    b = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, y, **kw), (x, y))
    torch.testing.assert_close(a, b)


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

    def test_a_leaf_keeps_its_values_and_gets_a_new_grad(self):
        x = torch.randn(6, 9, requires_grad=True)
        before = x.detach().clone()
        y = torch.randint(0, 9, (6,))
        (expected,) = torch.autograd.grad(F.cross_entropy(x, y), x)
        crossent.cross_entropy(x, y, inplace_backward=True).backward()
        assert torch.equal(x.detach(), before)
        assert x.grad.data_ptr() != x.data_ptr()
        torch.testing.assert_close(x.grad, expected)

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


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_class_weight_that_requires_grad_gets_pytorchs_gradient(eps):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1)
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    ours = torch.autograd.grad(crossent.cross_entropy(x, p, weight=w, label_smoothing=eps), (x, w))
    theirs = torch.autograd.grad(F.cross_entropy(x, p, weight=w, label_smoothing=eps), (x, w))
    torch.testing.assert_close(ours, theirs)


def test_class_weight_gradient_with_class_indices_follows_the_weighted_mean():
    """PyTorch refuses a weight that requires grad here; crossent differentiates its formula
    ``sum_i w_t_i l_i / sum_i w_t_i`` (checked by finite differences)."""
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, -100])
    w = torch.rand(4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda z, v: crossent.cross_entropy(z, t, weight=v, label_smoothing=0.1),
        (x.requires_grad_(), w.requires_grad_()),
    )


def test_binary_weights_that_require_grad_get_gradients():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, 4, dtype=torch.float64)
    w = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    pw = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z, a, b: crossent.binary_cross_entropy_with_logits(z, y, weight=a, pos_weight=b),
        (x, w, pw),
    )


# ---------------------------------------------------------------- torch.func transforms


@pytest.mark.parametrize(
    ("ours", "theirs", "binary"),
    [
        (crossent.cross_entropy, F.cross_entropy, False),
        (crossent.nll_loss, F.nll_loss, False),
        (crossent.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, True),
    ],
)
def test_per_sample_gradients_with_vmap_and_grad_match_pytorch(ours, theirs, binary):
    # PyTorch's per-sample-gradient recipe: vmap(grad(loss)) over the batch
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64)
    t = torch.rand(6, 5, dtype=torch.float64) if binary else torch.randint(0, 5, (6,))
    kw = {} if binary or ours is crossent.nll_loss else {"label_smoothing": 0.1}

    def per_sample(fn):
        return torch.func.vmap(torch.func.grad(lambda xi, ti: fn(xi[None], ti[None], **kw)))(x, t)

    torch.testing.assert_close(per_sample(ours), per_sample(theirs))


@pytest.mark.parametrize("name", ["focal", "gce", "sce", "nce", "distill", "dice"])
def test_registry_losses_under_vmap_and_grad_equal_a_loop(name):
    torch.manual_seed(0)
    module = crossent.get_loss(name)
    x = torch.randn(4, 5, dtype=torch.float64)
    t = torch.randn(4, 5, dtype=torch.float64) if name == "distill" else torch.randint(0, 5, (4,))
    batched = torch.func.vmap(torch.func.grad(lambda xi, ti: module(xi[None], ti[None])))(x, t)
    for i in range(4):
        xi = x[i : i + 1].clone().requires_grad_()
        module(xi, t[i : i + 1]).backward()
        torch.testing.assert_close(batched[i], xi.grad[0])


def test_jacrev_and_hessian_match_pytorch():
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 1])
    for transform in (torch.func.jacrev, torch.func.hessian):
        ours = transform(lambda z: crossent.cross_entropy(z, t, label_smoothing=0.2))(x)
        theirs = transform(lambda z: F.cross_entropy(z, t, label_smoothing=0.2))(x)
        torch.testing.assert_close(ours, theirs)


def test_class_index_out_of_range_under_vmap_still_raises():
    # the host-side check steps aside under vmap; PyTorch's own indexing catches it
    x = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match="out of bounds"):
        torch.func.vmap(crossent.cross_entropy)(x, torch.tensor([0, 9, 1]))
