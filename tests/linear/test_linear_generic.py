"""linear_loss for the registry losses that are not one engine term, against the unfused path.

The reference is "the linear layer, then the registry module" on float64 logits (each module
is itself tested against independent formulas in tests/losses and tests/test_overlap.py).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from crossent import registry
from crossent.linear import generic as linear_generic
from crossent.linear import linear_loss, term_losses

N, H, C = 11, 6, 4
GENERIC = [n for n in registry.available_losses() if n not in term_losses()]


def _operands(n=N, c=C, out=(), bias=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, H, generator=g, dtype=dtype).requires_grad_()
    w = (torch.randn(c, *out, H, generator=g, dtype=dtype) / H**0.5 * 2).requires_grad_()
    b = torch.randn(c, *out, generator=g, dtype=dtype).requires_grad_() if bias else None
    return x, w, b


def _target(name, batch=(N,), c=C, out=(), seed=1, **settings_):
    """A target of the kind ``name`` takes (and the per-row extras its forward takes)."""
    g = torch.Generator().manual_seed(seed)
    kind = registry.loss_kind(name)
    sigmoid_overlap = kind == "overlap" and settings_.get("mode") in ("binary", "multilabel")
    if kind == "binary" or sigmoid_overlap:
        return (torch.rand(*batch, c, *out, generator=g, dtype=torch.float64) < 0.4).double(), {}
    if kind == "distillation":
        teacher = 2 * torch.randn(*batch, c, *out, generator=g, dtype=torch.float64)
        labels = torch.randint(0, c, (*batch, *out), generator=g)
        if labels.numel() > 1:
            labels.view(-1)[1] = -100
        return teacher, {"labels": labels}
    t = torch.randint(0, c, (*batch, *out), generator=g)
    if kind != "overlap" and t.numel() > 2:
        t.view(-1)[2] = -100
    return t, {}


def _unfused(name, x, w, b, target, extras, **settings_):
    logits = F.linear(x, w.reshape(-1, w.shape[-1]), None if b is None else b.reshape(-1))
    logits = logits.reshape(math.prod(x.shape[:-1]), *w.shape[:-1])
    loss = registry.get_loss(name, **settings_)
    flat = {k: v.reshape(logits.shape[0], *v.shape[x.dim() - 1 :]) for k, v in extras.items()}
    t = target.reshape(logits.shape[0], *target.shape[x.dim() - 1 :])
    out = loss(logits, t, **flat)
    if out.dim() and out.shape[0] == logits.shape[0] and x.dim() > 2:
        out = out.reshape(*x.shape[:-1], *out.shape[1:])
    return out


def _assert_same_loss_and_grads(got, expected, params, seed=2):
    torch.testing.assert_close(got, expected)
    params = [p for p in params if p is not None]
    g = torch.Generator().manual_seed(seed)
    upstream = torch.rand(expected.shape, generator=g, dtype=expected.dtype) + 0.5
    grads = torch.autograd.grad(got, params, upstream)
    ref = torch.autograd.grad(expected, params, upstream)
    for a, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, r)


def test_the_generic_path_covers_every_other_registry_name():
    kinds = {registry.loss_kind(n) for n in GENERIC}
    assert kinds == {"binary", "log_probs", "multiclass", "distillation", "overlap"}
    assert set(GENERIC) | set(term_losses()) == set(registry.available_losses())


@pytest.mark.parametrize("name", GENERIC)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [3, 4, N])
def test_every_registry_loss_equals_linear_then_the_loss(name, reduction, chunk_size):
    x, w, b = _operands()
    target, extras = _target(name)
    got = linear_loss(
        x, w, target, name, linear_bias=b, chunk_size=chunk_size, reduction=reduction, **extras
    )
    expected = _unfused(name, x, w, b, target, extras, reduction=reduction)
    _assert_same_loss_and_grads(got, expected, (x, w, b))


@pytest.mark.parametrize(
    "name,settings_",
    [
        ("nll", {"weight": [1.0, 2.0, 0.5, 3.0]}),
        ("nll", {"weight": [1.0, 0.0, 0.0, 0.0]}),
        ("bce", {"pos_weight": [1.0, 2.0, 0.5, 3.0], "label_smoothing": 0.1}),
        ("sigmoid_focal", {"gamma": 1.5, "alpha": None}),
        ("binary_gce", {"q": 0.5, "truncate": 0.1}),
        ("nfl", {"gamma": 2.0}),
        ("apl", {"active": "nfl", "passive": "mae", "alpha": 0.5, "beta": 2.0}),
        ("distill", {"temperature": 2.0, "divergence": "jsd", "alpha": 0.3}),
        ("distill", {"divergence": "reverse_kl"}),
        ("dice", {"per_image": True}),
        ("dice", {"smooth": 0.0}),
        ("tversky", {"alpha": 0.7, "beta": 0.3, "reduction": "none"}),
        ("focal_tversky", {"gamma": 0.5, "per_image": True, "reduction": "none"}),
        ("unified_focal", {"asymmetric": False, "weight": 0.3}),
        ("unified_focal", {"per_image": True, "reduction": "sum"}),
        ("dice", {"mode": "multilabel"}),
        ("tversky", {"mode": "binary", "per_image": True}),
        ("unified_focal", {"mode": "multilabel"}),
        ("jaccard", {}),
    ],
)
def test_hyper_parameters_and_modes(name, settings_):
    x, w, b = _operands()
    target, extras = _target(name, **settings_)
    got = linear_loss(x, w, target, name, linear_bias=b, chunk_size=4, **settings_, **extras)
    expected = _unfused(name, x, w, b, target, extras, **settings_)
    _assert_same_loss_and_grads(got, expected, (x, w, b))


@pytest.mark.parametrize("name", ["nll", "bce", "distill", "dice", "nce"])
def test_k_dimensional_weight(name):
    # W (C, d, H): logits (N, C, d), e.g. d positions per row.
    x, w, b = _operands(n=5, out=(3,))
    target, extras = _target(name, batch=(5,), out=(3,))
    got = linear_loss(x, w, target, name, linear_bias=b, chunk_size=2, **extras)
    expected = _unfused(name, x, w, b, target, extras)
    _assert_same_loss_and_grads(got, expected, (x, w, b))


@pytest.mark.parametrize("name", ["nll", "bce", "distill"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_several_batch_dims_are_rows(name, reduction):
    x, w, b = _operands(n=6)
    x3 = x.detach().reshape(2, 3, H).requires_grad_()
    target, extras = _target(name, batch=(2, 3))
    got = linear_loss(
        x3, w, target, name, linear_bias=b, chunk_size=4, reduction=reduction, **extras
    )
    expected = _unfused(name, x3, w, b, target, extras, reduction=reduction)
    assert got.shape == expected.shape
    _assert_same_loss_and_grads(got, expected, (x3, w, b))


def test_unbatched_input():
    x, w, b = _operands(n=1)
    x1 = x.detach()[0].requires_grad_()
    t = torch.tensor(2)
    got = linear_loss(x1, w, t, "nll", linear_bias=b, reduction="none")
    expected = registry.get_loss("nll", reduction="none")(F.linear(x1, w, b), t)
    assert got.shape == expected.shape == ()
    _assert_same_loss_and_grads(got, expected, (x1, w, b))


@pytest.mark.parametrize("name", ["nce", "bce", "dice", "unified_focal"])
def test_gradcheck(name):
    x, w, b = _operands(n=5, c=3)
    target, extras = _target(name, batch=(5,), c=3)

    def fn(x_, w_, b_):
        return linear_loss(x_, w_, target, name, linear_bias=b_, chunk_size=2, **extras)

    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_logits_exist_one_chunk_at_a_time(monkeypatch):
    seen = []
    real = linear_generic.GenericProblem.chunk_call

    def spy(self, module, logits, span):
        seen.append(logits.shape[0])
        return real(self, module, logits, span)

    monkeypatch.setattr(linear_generic.GenericProblem, "chunk_call", spy)
    monkeypatch.setattr(F, "linear", lambda *a, **k: pytest.fail("the full logits were formed"))
    for name in ("bce", "dice"):
        seen.clear()
        x, w, b = _operands()
        target, extras = _target(name)
        linear_loss(x, w, target, name, linear_bias=b, chunk_size=4, **extras).backward()
        assert max(seen) == 4
        sweeps = 2 if name == "dice" else 1  # set losses: statistics, then gradients
        assert sum(seen) == sweeps * N


def test_no_grad_computes_the_loss_alone():
    x, w, b = _operands()
    target, _ = _target("bce")
    with torch.no_grad():
        got = linear_loss(x, w, target, "bce", linear_bias=b, chunk_size=3)
    assert not got.requires_grad
    torch.testing.assert_close(got, _unfused("bce", x, w, b, target, {}).detach())


def test_default_chunk_and_lean_accumulation():
    x, w, b = _operands(dtype=torch.float32)
    target, _ = _target("nce")
    got = linear_loss(x, w, target, "nce", linear_bias=b, accumulate_dtype=torch.float32)
    expected = _unfused("nce", x, w, b, target, {})
    torch.testing.assert_close(got, expected)
    (gw,) = torch.autograd.grad(got, (w,))
    (ref,) = torch.autograd.grad(expected, (w,))
    torch.testing.assert_close(gw, ref)


def test_double_backward_through_the_formula():
    x, w, b = _operands(n=4, c=3)
    target, _ = _target("bce", batch=(4,), c=3)
    got = linear_loss(x, w, target, "bce", linear_bias=b, chunk_size=2)
    expected = _unfused("bce", x, w, b, target, {})
    (g1,) = torch.autograd.grad(got, x, create_graph=True)
    (r1,) = torch.autograd.grad(expected, x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), w)
    (r2,) = torch.autograd.grad(r1.sum(), w)
    torch.testing.assert_close(g2, r2)


def test_a_soft_target_that_requires_grad_gets_its_gradient():
    x, w, b = _operands()
    target = torch.rand(N, C, dtype=torch.float64, requires_grad=True)
    got = linear_loss(x, w, target, "bce", linear_bias=b)
    expected = _unfused("bce", x, w, b, target, {})
    (gt,) = torch.autograd.grad(got, target)
    (rt,) = torch.autograd.grad(expected, target)
    torch.testing.assert_close(gt, rt)


def test_all_ignored_rows_give_zero_and_zero_gradients():
    x, w, b = _operands()
    t = torch.full((N,), -100)
    loss = linear_loss(x, w, t, "nll", linear_bias=b, chunk_size=4)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(w.grad) == 0


def test_empty_batch():
    x, w, b = _operands(n=0)
    loss = linear_loss(x, w, torch.zeros(0, C, dtype=torch.float64), "bce", reduction="sum")
    assert loss.item() == 0.0


@pytest.mark.parametrize(
    "target,kwargs,message",
    [
        (torch.zeros(N + 1, C), {}, "`target` to have the batch dims of `input`"),
        (torch.zeros(N, C), {"labels": torch.zeros(3, dtype=torch.long)}, "`labels`"),
        (torch.zeros(N, C), {"temperature": 0.0}, "`temperature`"),
    ],
)
def test_bad_input_names_the_argument(target, kwargs, message):
    x, w, _ = _operands(dtype=torch.float32)
    name = "distill" if "labels" in kwargs or "temperature" in kwargs else "bce"
    with pytest.raises(ValueError, match=message):
        linear_loss(x, w, target, name, **kwargs)


def test_errors_of_the_loss_on_a_chunk_say_which_rows_it_holds():
    x, w = torch.randn(6, 4), torch.randn(5, 4)
    target = torch.tensor([0, 1, 2, 3, 4, 9])
    with pytest.raises(ValueError, match=r"index 9 at flat position 1 .*rows 4 to 5"):
        linear_loss(x, w, target, "nll", reduction="sum", chunk_size=2)
    with pytest.raises(ValueError, match=r"logits `input @ linear_weight.T` of shape \(6, 5\)"):
        linear_loss(x, w, torch.rand(6, 4), "bce")


def test_a_float_target_of_index_shape_is_named_by_its_dtype():
    x, w = torch.randn(6, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"dtype torch.float32 \(read as probabilities\)"):
        linear_loss(x, w, torch.randint(0, 5, (6,)).float(), "focal")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 9),
    chunk=st.integers(1, 9),
    name=st.sampled_from(["nll", "bce", "nce", "dice", "distill"]),
    seed=st.integers(0, 2**16),
)
def test_the_chunk_size_never_changes_the_result(n, chunk, name, seed):
    x, w, b = _operands(n=n, seed=seed)
    target, extras = _target(name, batch=(n,), seed=seed + 1)
    if name == "distill":
        extras = {}
    whole = linear_loss(x, w, target, name, linear_bias=b, chunk_size=n, **extras)
    chunked = linear_loss(x, w, target, name, linear_bias=b, chunk_size=chunk, **extras)
    torch.testing.assert_close(chunked, whole)
    g_whole = torch.autograd.grad(whole, (x, w, b))
    g_chunked = torch.autograd.grad(chunked, (x, w, b))
    for a, r in zip(g_chunked, g_whole, strict=True):
        torch.testing.assert_close(a, r)
