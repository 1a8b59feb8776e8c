"""Fused linear + loss against "linear layer then the loss", written plainly in float64."""

import inspect
import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import crossent
from crossent import registry
from crossent.linear import fused as fused_linear
from crossent.linear import linear_cross_entropy, linear_loss, term_losses
from crossent.terms import FocalTerm
from tests import reference

N, H, C = 11, 6, 7
A = -4.0
# name -> (hyper-parameters, float64 elementwise reference of tests/reference.py, defaults
# of the loss's smoothing that the reference must be told about)
REFERENCES = {
    "ce": ({}, reference.lq_elem(0.0), {}),
    "focal": ({"gamma": 2.0}, reference.focal_elem(2.0), {}),
    "gce": ({"q": 0.7, "truncate": 0.05}, reference.lq_elem(0.7, 0.05), {}),
    "sgce": (
        {"q": 0.5},
        reference.lq_elem(0.5),
        {"label_smoothing": 0.1, "smoothing": "others"},
    ),
    "mae": ({}, reference.mae_elem, {}),
    "unhinged": ({}, reference.unhinged_elem, {}),
    "rce": ({"A": A}, reference.rce_elem(A), {}),
    "sce": ({"alpha": 0.3, "beta": 0.7, "A": A}, reference.sce_elem(0.3, 0.7, A), {}),
    "poly1": ({"epsilon": 2.0}, reference.poly1_elem(2.0), {}),
    "erce": ({"beta": 0.2}, reference.confidence_penalty_elem(0.2), {}),
    "brier": ({}, reference.brier_elem, {}),
}


def _operands(n=N, h=H, c=C, dtype=torch.float64, bias=True, out=()):
    x = torch.randn(n, h, dtype=dtype).requires_grad_()
    w = (torch.randn(c, *out, h, dtype=dtype) / h**0.5 * 3).requires_grad_()
    b = torch.randn(c, *out, dtype=dtype).requires_grad_() if bias else None
    return x, w, b


def _index_target(n=N, c=C, ignore=True):
    t = torch.randint(0, c, (n,))
    if ignore:
        t[1] = -100
    return t


def _grads(loss, params, grad_output=None):
    params = [p for p in params if p is not None]
    out = torch.ones_like(loss) if grad_output is None else grad_output
    return torch.autograd.grad(loss, params, out)


def _assert_close_all(got, expected, atol=1e-10, rtol=1e-8):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- cross-entropy grid


# 'others' smoothing is not defined for probability targets (it raises; see BAD below).
CE_GRID = [
    case
    for case in itertools.product(
        ["mean", "sum", "none"],
        [None, "w"],
        [0.0, 0.2],
        ["uniform", "others"],
        ["index", "probs"],
        [0.0, 1e-2],
    )
    if not (case[3] == "others" and case[4] == "probs")
]


@pytest.mark.parametrize("reduction,weight,eps,smoothing,kind,z_loss", CE_GRID)
def test_cross_entropy_matches_float64_reference(reduction, weight, eps, smoothing, kind, z_loss):
    x, w, b = _operands()
    cw = torch.rand(C, dtype=torch.float64) + 0.2 if weight else None
    if kind == "index":
        t = _index_target()
    else:
        t = torch.softmax(torch.randn(N, C, dtype=torch.float64), 1)
    kwargs = dict(
        weight=cw, reduction=reduction, label_smoothing=eps, smoothing=smoothing, z_loss=z_loss
    )
    got = linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=4, **kwargs)
    expected = reference.cross_entropy(x @ w.T + b, t, **kwargs)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-9)
    go = torch.rand_like(got) + 0.5 if reduction == "none" else None
    _assert_close_all(_grads(got, (x, w, b), go), _grads(expected, (x, w, b), go))


@pytest.mark.parametrize("chunk_size", [1, 3, 4, N - 1, N, N + 5, None])
def test_chunk_sizes_give_the_same_result(chunk_size):
    x, w, b = _operands()
    t = _index_target()
    got = linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=chunk_size)
    expected = reference.cross_entropy(x @ w.T + b, t)
    torch.testing.assert_close(got, expected)
    _assert_close_all(_grads(got, (x, w, b)), _grads(expected, (x, w, b)))


def test_reduction_none_scales_every_row_by_its_own_grad_output():
    # Liger issues 678/968: every row scaled by grad_output[0]
    x, w, b = _operands()
    t = _index_target()
    got = linear_cross_entropy(x, w, t, linear_bias=b, reduction="none", chunk_size=3)
    expected = reference.cross_entropy(x @ w.T + b, t, reduction="none")
    go = torch.linspace(-2.0, 3.0, N, dtype=torch.float64)
    _assert_close_all(_grads(got, (x, w, b), go), _grads(expected, (x, w, b), go))


def test_scalar_grad_output_other_than_one_scales_the_stored_gradients():
    x, w, b = _operands()
    t = _index_target()
    got = 2.5 * linear_cross_entropy(x, w, t, linear_bias=b)
    expected = 2.5 * reference.cross_entropy(x @ w.T + b, t)
    _assert_close_all(_grads(got, (x, w, b)), _grads(expected, (x, w, b)))


def test_without_bias_and_gradients_only_where_required():
    x, w, _ = _operands(bias=False)
    x.requires_grad_(False)
    t = _index_target()
    got = linear_cross_entropy(x, w, t)
    got.backward()
    assert x.grad is None
    (expected,) = _grads(reference.cross_entropy(x @ w.T, t), (w,))
    torch.testing.assert_close(w.grad, expected)


# ---------------------------------------------------------------- every term


def test_every_term_loss_has_a_reference_here():
    assert set(term_losses()) == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("variant", ["plain", "weighted_smoothed", "probs"])
def test_every_term_matches_float64_reference(name, variant):
    params, elem, defaults = REFERENCES[name]
    x, w, b = _operands()
    cw = None
    engine = dict(defaults)
    if variant == "probs":
        t = torch.softmax(2 * torch.randn(N, C, dtype=torch.float64), 1)
        if engine.get("smoothing") == "others":
            engine = {"label_smoothing": 0.1, "smoothing": "uniform"}
    else:
        t = _index_target()
    if variant == "weighted_smoothed":
        cw = torch.rand(C, dtype=torch.float64) + 0.2
        engine = {"label_smoothing": 0.15, "smoothing": engine.get("smoothing", "uniform")}
    got = linear_loss(x, w, t, name, linear_bias=b, chunk_size=4, weight=cw, **params, **engine)
    expected = reference.per_class_loss(x @ w.T + b, t, elem, weight=cw, **engine)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)
    _assert_close_all(_grads(got, (x, w, b)), _grads(expected, (x, w, b)), atol=1e-9, rtol=1e-7)


def test_focal_alpha_and_flsd53_preset():
    x, w, b = _operands()
    t = _index_target()
    alpha = torch.rand(C, dtype=torch.float64) + 0.1
    got = linear_loss(x, w, t, "focal(gamma=1.5)", linear_bias=b, alpha=alpha, reduction="sum")
    expected = reference.per_class_loss(
        x @ w.T + b, t, reference.focal_elem(1.5), class_scale=alpha, reduction="sum"
    )
    torch.testing.assert_close(got, expected)
    _assert_close_all(_grads(got, (x, w, b)), _grads(expected, (x, w, b)), atol=1e-9, rtol=1e-7)
    got = linear_loss(x, w, t, "flsd-53", linear_bias=b)
    expected = reference.per_class_loss(x @ w.T + b, t, reference.focal_elem("flsd-53"))
    torch.testing.assert_close(got, expected)


def test_loss_given_as_a_term():
    x, w, b = _operands()
    t = _index_target()
    got = linear_loss(x, w, t, FocalTerm(2.0), linear_bias=b, reduction="none")
    expected = reference.per_class_loss(x @ w.T + b, t, reference.focal_elem(2.0), reduction="none")
    torch.testing.assert_close(got, expected)


def test_linear_loss_equals_the_registry_module_on_the_logits():
    x, w, b = _operands()
    t = _index_target()
    got = linear_loss(x, w, t, "ce", linear_bias=b, z_loss=0.01, label_smoothing=0.1)
    expected = registry.get_loss("ce", z_loss=0.01, label_smoothing=0.1)(x @ w.T + b, t)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- shapes and edge cases


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_zero_gradients(reduction):
    x, w, b = _operands()
    t = torch.full((N,), -100)
    loss = linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction, chunk_size=4)
    assert torch.all(loss == 0)
    for g in _grads(loss, (x, w, b)):
        assert torch.all(g == 0) and torch.isfinite(g).all()


@pytest.mark.parametrize("accumulate_dtype", [None, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["ce", "focal"])
def test_empty_batch_gives_zero_gradients(loss, reduction, accumulate_dtype):
    # no chunk runs: the weight gradient's accumulator was handed out unwritten before
    w = torch.randn(6, 4, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    x = torch.zeros(0, 4, requires_grad=True)
    for _ in range(3):  # leave non-zero garbage in the allocator's cache
        torch.full((6, 4), 123.0)
    out = linear_loss(
        x,
        w,
        torch.zeros(0, dtype=torch.long),
        loss,
        linear_bias=b,
        reduction=reduction,
        accumulate_dtype=accumulate_dtype,
    )
    gx, gw, gb = torch.autograd.grad(out.sum(), (x, w, b))
    assert gx.shape == x.shape
    assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))


def test_k_dimensional_weight_matches_pytorch_reference_path():
    x, w, b = _operands(out=(3, 2))
    t = torch.randint(0, C, (N, 3, 2))
    t[0, 1, 1] = -100
    for reduction in ("mean", "none"):
        got = linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction, chunk_size=4)
        expected = F.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction)
        torch.testing.assert_close(got, expected)
        go = torch.rand_like(got) if reduction == "none" else None
        _assert_close_all(_grads(got, (x, w, b), go), _grads(expected, (x, w, b), go))


def test_unbatched_and_several_batch_dims():
    x, w, b = _operands()
    got = linear_cross_entropy(x[0], w, torch.tensor(3), linear_bias=b, reduction="none")
    assert got.shape == ()
    torch.testing.assert_close(got, F.cross_entropy(x[0] @ w.T + b, torch.tensor(3)))
    xs = x[:10].reshape(2, 5, H)
    t = torch.randint(0, C, (2, 5))
    got = linear_cross_entropy(xs, w, t, linear_bias=b, reduction="none")
    assert got.shape == (2, 5)
    torch.testing.assert_close(
        got, F.cross_entropy((xs @ w.T + b).transpose(1, 2), t, reduction="none")
    )
    probs = torch.softmax(torch.randn(2, 5, C, dtype=torch.float64), -1)
    got = linear_cross_entropy(xs, w, probs, linear_bias=b)
    expected = F.cross_entropy((xs @ w.T + b).reshape(10, C), probs.reshape(10, C))
    torch.testing.assert_close(got, expected)


def test_non_contiguous_operands():
    x, w, b = _operands()
    xt = x.detach().T.contiguous().T.requires_grad_()  # column-major view
    wt = w.detach().T.contiguous().T.requires_grad_()
    assert not xt.is_contiguous() and not wt.is_contiguous()
    t = _index_target()
    got = linear_cross_entropy(xt, wt, t, linear_bias=b, chunk_size=3)
    expected = reference.cross_entropy(x @ w.T + b, t)
    torch.testing.assert_close(got, expected)
    _assert_close_all(_grads(got, (xt, wt)), _grads(expected, (x, w)))


def test_no_grad_and_inputs_without_grad_compute_the_loss_only(monkeypatch):
    x, w, b = _operands()
    t = _index_target()
    calls = []
    real = fused_linear.fused_pass
    monkeypatch.setattr(
        fused_linear, "fused_pass", lambda *a, **k: calls.append(a[4]) or real(*a, **k)
    )
    with torch.no_grad():
        loss = linear_cross_entropy(x, w, t, linear_bias=b)
    assert not loss.requires_grad
    loss2 = linear_cross_entropy(x.detach(), w.detach(), t, linear_bias=b.detach())
    assert not loss2.requires_grad
    assert calls == [(False, False, False)] * 2
    torch.testing.assert_close(loss, reference.cross_entropy(x @ w.T + b, t))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_retain_graph_second_backward_is_correct(reduction):
    x, w, b = _operands()
    t = _index_target()
    loss = linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction).sum()
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in (x, w, b)]
    loss.backward()
    for p, g in zip((x, w, b), first, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)


def test_gradients_reach_grad_without_a_copy():
    x, w, b = _operands()
    seen = {}
    real = fused_linear.fused_pass

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        seen["w"] = result.grad_weight.data_ptr()
        return result

    fused_linear.fused_pass = spy
    try:
        linear_cross_entropy(x, w, _index_target(), linear_bias=b).backward()
    finally:
        fused_linear.fused_pass = real
    assert w.grad.data_ptr() == seen["w"]


def test_double_backward_matches_unfused():
    x, w, b = _operands(n=5, c=4, h=3)
    t = _index_target(n=5, c=4)
    for reduction in ("mean", "none"):
        got = linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction, chunk_size=2)
        expected = F.cross_entropy(x @ w.T + b, t, reduction=reduction)
        gg = torch.autograd.grad(got.sum(), w, create_graph=True)[0].pow(2).sum()
        ge = torch.autograd.grad(expected.sum(), w, create_graph=True)[0].pow(2).sum()
        _assert_close_all(_grads(gg, (x, w, b)), _grads(ge, (x, w, b)))


def test_probability_target_that_requires_grad_gets_its_gradient():
    x, w, b = _operands()
    p = torch.softmax(torch.randn(N, C, dtype=torch.float64), 1).requires_grad_()
    got = linear_cross_entropy(x, w, p, linear_bias=b, label_smoothing=0.1)
    expected = F.cross_entropy(x @ w.T + b, p, label_smoothing=0.1)
    _assert_close_all(_grads(got, (x, w, b, p)), _grads(expected, (x, w, b, p)))


def test_gradcheck_tiny():
    x, w, b = _operands(n=4, c=3, h=2)
    t = torch.tensor([0, 2, -100, 1])

    def fn(x, w, b):
        return linear_cross_entropy(
            x, w, t, linear_bias=b, chunk_size=3, label_smoothing=0.2, smoothing="others",
            reduction="none", z_loss=0.1,
        )  # fmt: skip

    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradcheck(
        lambda x, w: linear_loss(x, w, t, "focal", gamma=1.5, chunk_size=2), (x, w)
    )


def test_extreme_logits_stay_finite():
    x, w, b = _operands(dtype=torch.float32)
    with torch.no_grad():
        w.mul_(1e3)
    t = _index_target()
    for name in ("ce", "focal"):
        loss = (
            linear_loss(x, w, t, name, linear_bias=b, gamma=0.5)
            if name == "focal"
            else (linear_cross_entropy(x, w, t, linear_bias=b))
        )
        grads = _grads(loss, (x, w, b))
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------- dtypes and accumulation


def test_bfloat16_inputs_float32_loss_and_accumulation_beats_lean():
    torch.manual_seed(1)
    n, h, c = 256, 16, 40
    x64, w64, b64 = _operands(n=n, h=h, c=c)
    t = _index_target(n=n, c=c)
    expected = _grads(reference.cross_entropy(x64 @ w64.T + b64, t, reduction="sum"), (w64,))[0]
    errors = {}
    for acc in (None, torch.bfloat16):
        w = w64.detach().bfloat16().requires_grad_()
        x, b = x64.detach().bfloat16(), b64.detach().bfloat16().requires_grad_()
        loss = linear_cross_entropy(
            x, w, t, linear_bias=b, reduction="sum", chunk_size=2, accumulate_dtype=acc
        )
        assert loss.dtype == torch.float32
        loss.backward()
        assert w.grad.dtype == torch.bfloat16 and b.grad.dtype == torch.bfloat16
        errors[acc] = (w.grad.double() - expected).abs().max().item()
    assert errors[None] < errors[torch.bfloat16]
    assert errors[None] < 0.05 * expected.abs().max().item()


def test_float32_matches_pytorch_linear_cross_entropy():
    x, w, b = (t.detach().float().requires_grad_() for t in _operands(n=64, c=50, h=8))
    t = _index_target(n=64, c=50)
    opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=16)
    got = linear_cross_entropy(x, w, t, linear_bias=b, options=opts)
    expected = F.linear_cross_entropy(x, w, t, linear_bias=b, options=opts)
    torch.testing.assert_close(got, expected)
    _assert_close_all(_grads(got, (x, w, b)), _grads(expected, (x, w, b)), atol=1e-6, rtol=1e-5)
    # ignore_index=None is PyTorch's default and means -100
    torch.testing.assert_close(
        linear_cross_entropy(x, w, t, ignore_index=None), F.linear_cross_entropy(x, w, t)
    )


@pytest.mark.parametrize("name", ["ce", "focal", "bce"])
def test_float64_probabilities_give_a_float64_loss_like_the_unfused_path(name):
    # PyTorch (and the loss on the logits) return promote_types(input, target).
    x, w, b = (t.detach().float().requires_grad_() for t in _operands(n=16, c=9, h=5))
    soft = torch.rand(16, 9, dtype=torch.float64)
    t = soft if name == "bce" else soft / soft.sum(1, keepdim=True)
    got = linear_loss(x, w, t, name, linear_bias=b)
    expected = registry.get_loss(name)(F.linear(x, w, b), t)
    assert got.dtype == expected.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if name == "ce":
        pytorch = F.linear_cross_entropy(x, w, t, linear_bias=b)
        assert pytorch.dtype == torch.float64
        torch.testing.assert_close(got, pytorch, rtol=1e-6, atol=1e-6)
    grads = _grads(got, (x, w, b))
    assert all(g.dtype == torch.float32 for g in grads)
    _assert_close_all(grads, _grads(expected, (x, w, b)), atol=1e-5, rtol=1e-5)


def test_signature_is_a_drop_in_for_pytorch():
    ours = inspect.signature(linear_cross_entropy).parameters
    theirs = inspect.signature(F.linear_cross_entropy).parameters
    for name, param in theirs.items():
        assert name in ours and ours[name].kind == param.kind
    assert list(ours)[:3] == ["input", "linear_weight", "target"]
    assert ours["ignore_index"].default == -100 and ours["reduction"].default == "mean"
    assert ours["chunk_size"].default is None and ours["smoothing"].default == "uniform"
    assert inspect.signature(linear_loss).parameters["loss"].default == "focal"
    assert crossent.linear.linear_cross_entropy is linear_cross_entropy


# ---------------------------------------------------------------- chunk size choice


def test_cpu_chunk_rows_follow_the_budget():
    rows = fused_linear.choose_chunk_rows(
        4096, 2048, 32000, torch.float32, torch.float32, torch.float32, torch.device("cpu")
    )
    assert rows == 256  # 32 MiB of float32 logits, a multiple of 64
    balanced = fused_linear.choose_chunk_rows(
        40, 16, 256000, torch.float32, torch.float32, torch.float32, torch.device("cpu")
    )
    assert balanced == 20  # 32 rows of 1 MB fit: two chunks of 20, not 32 + 8
    small = fused_linear.choose_chunk_rows(
        10, 4, 7, torch.float32, torch.float32, torch.float32, torch.device("cpu")
    )
    assert small == 10
    huge = fused_linear.choose_chunk_rows(
        8, 4, 10**8, torch.float32, torch.float32, torch.float32, torch.device("cpu")
    )
    assert huge == 1


def test_cpu_chunk_rows_grow_with_the_hidden_size():
    # the logits chunk may take an eighth of the K x H weight gradient: H / 8 rows in float32
    cpu = torch.device("cpu")
    for hidden, k in [(4096, 32000), (4096, 128256), (8192, 32000)]:
        rows = fused_linear.choose_chunk_rows(
            16384, hidden, k, torch.float32, torch.float32, torch.float32, cpu
        )
        assert rows == hidden // 8
    # a float64 accumulator counts twice: the chunk may hold twice the rows
    wide = fused_linear.choose_chunk_rows(
        16384, 4096, 32000, torch.float32, torch.float32, torch.float64, cpu
    )
    assert wide == 1024


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_chunk_rows_fast_and_lean():
    dev = torch.device("cuda")
    fast = fused_linear.choose_chunk_rows(
        8192, 4096, 128256, torch.bfloat16, torch.bfloat16, torch.float32, dev
    )
    lean = fused_linear.choose_chunk_rows(
        8192, 4096, 128256, torch.bfloat16, torch.bfloat16, torch.bfloat16, dev
    )
    assert fast == 2752 and lean == 256  # 3 balanced chunks / Liger's 256 rows


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["ce", "focal", "poly1", "mae"])
def test_cuda_bfloat16_matches_unfused(name):
    torch.manual_seed(0)
    n, h, c = 1000, 64, 3001
    x = torch.randn(n, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(c, h, device="cuda") / 8).bfloat16().requires_grad_()
    t = torch.randint(0, c, (n,), device="cuda")
    t[::7] = -100
    got = linear_loss(x, w, t, name, chunk_size=300, label_smoothing=0.1)
    xf, wf = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    expected = registry.get_loss(name, label_smoothing=0.1)(xf @ wf.T, t)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
    for g, e in zip(_grads(got, (x, w)), _grads(expected, (xf, wf)), strict=True):
        torch.testing.assert_close(g.float(), e, atol=2e-3, rtol=5e-2)


def test_triton_kernel_path_under_the_interpreter():
    pytest.importorskip("triton")
    script = textwrap.dedent(
        """
        import warnings
        import torch
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        from crossent import kernels
        from crossent.kernels import ops
        from crossent.linear import linear_cross_entropy, linear_loss
        torch.manual_seed(0)
        x = torch.randn(9, 5, requires_grad=True)
        w = torch.randn(23, 5, requires_grad=True)
        b = torch.randn(23, requires_grad=True)
        t = torch.randint(0, 23, (9,))
        t[2] = -100
        cw = torch.rand(23) + 0.5
        calls = []
        real = ops.loss_and_grad_inplace
        ops.loss_and_grad_inplace = lambda *a, **k: calls.append(1) or real(*a, **k)
        runs = {}
        for backend in ("torch", "triton"):
            kernels.set_backend(backend)
            out = []
            for red, kw in [("mean", {}), ("none", dict(weight=cw, label_smoothing=0.2,
                                                         smoothing="others", z_loss=1e-3))]:
                loss = linear_cross_entropy(x, w, t, linear_bias=b, chunk_size=4,
                                            reduction=red, **kw)
                out += [loss.detach(), *torch.autograd.grad(loss.sum(), (x, w, b))]
            loss = linear_loss(x, w, t, "focal", gamma=2.0, linear_bias=b, chunk_size=5)
            out += [loss.detach(), *torch.autograd.grad(loss, (x, w, b))]
            runs[backend] = out
        assert calls, "the kernel was not used"
        for a, c in zip(runs["torch"], runs["triton"]):
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)
        print("ok")
        """
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


# ---------------------------------------------------------------- bad input

_X = torch.randn(4, 3)
_W = torch.randn(5, 3)
_T = torch.tensor([0, 1, 2, 4])
BAD = [
    (dict(input=[1.0]), TypeError, "`input` to be a torch.Tensor"),
    (dict(input=torch.ones(4, 3, dtype=torch.long)), TypeError, "`input` to have a floating"),
    (dict(linear_weight=_W.double()), TypeError, "`linear_weight` to have the dtype of `input`"),
    (dict(linear_weight=torch.randn(5, 4)), ValueError, "`linear_weight` to have last dimension"),
    (dict(linear_weight=torch.randn(5)), ValueError, "`linear_weight` to have shape"),
    (dict(linear_bias=torch.randn(4)), ValueError, "`linear_bias` to have shape"),
    (dict(target=torch.tensor([0, 1])), ValueError, "`target` to have shape"),
    (dict(target=torch.tensor([0, 1, 2, 5])), ValueError, "out of range"),
    (dict(chunk_size=0), ValueError, "`chunk_size` >= 1"),
    (dict(chunk_size=2.0), TypeError, "`chunk_size` to be an int"),
    (dict(chunk_size=True), TypeError, "`chunk_size` to be an int"),
    (dict(accumulate_dtype=torch.float16), ValueError, "`accumulate_dtype`"),
    (dict(accumulate_dtype="float32"), TypeError, "`accumulate_dtype` to be a torch.dtype"),
    (dict(reduction="avg"), ValueError, "`reduction`"),
    (dict(smoothing="both"), ValueError, "`smoothing`"),
    (dict(label_smoothing=1.5), ValueError, "`label_smoothing`"),
    (dict(label_smoothing=0.9, smoothing="others"), ValueError, "`label_smoothing` <="),
    (dict(weight=torch.ones(3)), ValueError, "`weight` to have shape"),
    (dict(z_loss=-1.0), ValueError, "`z_loss`"),
    (dict(ignore_index=1.5), TypeError, "`ignore_index` to be an int"),
    (dict(options=3), TypeError, "`options`"),
    (
        dict(target=torch.softmax(torch.randn(4, 5), 1), label_smoothing=0.1, smoothing="others"),
        ValueError,
        "`smoothing` 'uniform' for probability targets",
    ),
    (dict(input=torch.randn(2, 2, 3), linear_weight=torch.randn(5, 2, 3)), ValueError, "`input`"),
]


@pytest.mark.parametrize("kwargs,exc,message", BAD)
def test_bad_input_raises_naming_the_argument(kwargs, exc, message):
    args = dict(input=_X, linear_weight=_W, target=_T)
    keys = ("input", "linear_weight", "target")
    args.update({k: v for k, v in kwargs.items() if k in keys})
    rest = {k: v for k, v in kwargs.items() if k not in keys}
    with pytest.raises(exc, match=message):
        linear_cross_entropy(args["input"], args["linear_weight"], args["target"], **rest)


@pytest.mark.parametrize(
    "loss,kwargs,exc,message",
    [
        ("nope", {}, ValueError, "Unknown loss"),
        ("focal", {"gamma": -1.0}, ValueError, "`gamma`"),
        ("focal", {"beta": 1.0}, ValueError, "Unknown argument `beta`"),
        ("focal", {"alpha": [0.5, 0.5]}, ValueError, "`alpha`"),
        (3, {}, TypeError, "`spec` to be a string"),
    ],
)
def test_linear_loss_bad_names_and_hyper_parameters(loss, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        linear_loss(_X, _W, _T, loss, **kwargs)


@pytest.mark.parametrize("loss", ["rce", "sce"])
def test_fused_loss_reading_log_of_target_rejects_negative_probabilities(loss):
    x, w = torch.randn(4, 3), torch.randn(5, 3)
    p = torch.softmax(torch.randn(4, 5), 1)
    p[0, 1] = -1e-9
    with pytest.raises(ValueError, match=r"`target`.*>= 0"):
        crossent.linear_loss(x, w, p, loss)


@pytest.mark.parametrize(
    "loss,kwargs",
    [("ce", {}), ("focal", {"alpha": True}), ("poly1", {})],
)
def test_loss_tensors_that_require_grad_get_the_unfused_gradient(loss, kwargs):
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, -100, 1])
    cw = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    extra = {}
    if kwargs.get("alpha"):
        extra["alpha"] = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    fused = crossent.linear_loss(x, w, t, loss, weight=cw, **extra)
    unfused = crossent.get_loss(loss, weight=cw, **extra)(x @ w.T, t)
    inputs = (x, w, cw, *extra.values())
    torch.testing.assert_close(
        torch.autograd.grad(fused, inputs), torch.autograd.grad(unfused, inputs)
    )


def test_generic_loss_pos_weight_that_requires_grad_gets_its_gradient():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(6, 4, dtype=torch.float64)
    pw = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    fused = crossent.linear_loss(x, w, y, "bce", pos_weight=pw)
    unfused = crossent.binary_cross_entropy_with_logits(x @ w.T, y, pos_weight=pw)
    torch.testing.assert_close(
        torch.autograd.grad(fused, (x, w, pw)), torch.autograd.grad(unfused, (x, w, pw))
    )


def test_grads_share_no_storage_with_the_graph_across_retained_backwards():
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)  # flattened inside
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (2, 3))
    expected = torch.autograd.grad(F.cross_entropy((x @ w.T).reshape(6, 4), t.reshape(6)), (x, w))
    loss = crossent.linear_cross_entropy(x, w, t, chunk_size=4)
    for k in range(1, 4):
        loss.backward(retain_graph=True)
        torch.testing.assert_close((x.grad, w.grad), tuple(k * g for g in expected))
    x.grad.zero_()
    w.grad.zero_()
    (loss * 3).backward()
    torch.testing.assert_close((x.grad, w.grad), tuple(3 * g for g in expected))


def test_fused_call_compiles_into_one_graph():
    """No graph break at the chunk-size choice (a host query) or the chunk loop."""
    x = torch.randn(8, 6, requires_grad=True)
    w = torch.randn(5, 6, requires_grad=True)
    t = torch.randint(0, 5, (8,))

    def f(x, w):
        return crossent.linear_cross_entropy(x, w, t) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    ours, eager = compiled(x, w), f(x, w)
    torch.testing.assert_close(ours, eager)
    torch.testing.assert_close(
        torch.autograd.grad(ours, (x, w)), torch.autograd.grad(eager, (x, w))
    )
    assert torch._dynamo.explain(f)(x, w).graph_break_count == 0


def test_per_sample_gradients_under_vmap_and_grad_match_the_unfused_layer():
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64)
    t = torch.randint(0, 5, (4,))

    def per_sample(loss):
        return torch.func.vmap(torch.func.grad(lambda xi, ti: loss(xi[None], ti[None])))(x, t)

    ours = per_sample(lambda xi, ti: linear_cross_entropy(xi, w, ti, label_smoothing=0.1))
    theirs = per_sample(lambda xi, ti: F.cross_entropy(F.linear(xi, w), ti, label_smoothing=0.1))
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("accumulate_dtype", [None, torch.float64])
def test_a_weight_of_zero_classes_gives_zero_loss_and_gradients(accumulate_dtype):
    # every target ignored over 0 classes: loss 0 (PyTorch: NaN), no division by zero
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.zeros(0, 4, requires_grad=True)
    loss = linear_cross_entropy(x, w, torch.full((3,), -100), accumulate_dtype=accumulate_dtype)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert w.grad.shape == (0, 4) and bool((x.grad == 0).all())
