"""Bad input that once slipped through or failed deep inside: each a real call, refused clearly.

NaN targets of the binary losses, overlong loss specs, tensors on another device, logits near
float32's largest value, negative element weights, PyTorch's deprecated reduction arguments and
the error classes code written against PyTorch catches.
"""

import math
import warnings

import pytest
import torch

import crossent
from crossent import registry
from tests.reference_registry import inputs

BINARY = [n for n in registry.available_losses() if registry.loss_kind(n) == "binary"]


@pytest.mark.parametrize("name", BINARY)
def test_nan_targets_are_refused_by_every_binary_loss(name):
    target = torch.tensor([[0.0, math.nan, 1.0]])
    with pytest.raises(ValueError, match=r"`target` to hold values in \[0, 1\].*nan"):
        registry.get_loss(name)(torch.zeros(1, 3), target)


@pytest.mark.parametrize(
    "spec",
    [
        "focal(gamma=" + "-" * 5000 + "1)",  # RecursionError before
        "focal(gamma=" + "-" * 200_000 + "1)",  # MemoryError before
        "focal(gamma=" + "-" * 900 + "1)",  # within the length bound: too deep to show
        "focal(gamma=" + "(" * 500 + "1" + ")" * 500 + ")",  # nesting beyond the parser
    ],
    ids=["5000", "200000", "900", "parentheses"],
)
def test_overlong_and_deeply_nested_specs_raise_a_short_value_error(spec):
    with pytest.raises(ValueError, match=r"Malformed loss spec") as err:
        registry.get_loss(spec)
    assert len(str(err.value)) < 600  # the spec is shortened in the message


@pytest.mark.parametrize("name", registry.available_losses())
def test_a_target_on_another_device_is_named_before_any_value_is_read(name):
    args, _ = inputs(registry.loss_kind(name))
    moved = (args[0], args[1].to("meta"))
    with pytest.raises(RuntimeError, match=r"`(target|teacher_logits)` on the device of `\w+`"):
        registry.loss_function(name)(*moved)


def test_weights_on_another_device_are_named():
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"`weight` on the device of `input` \(cpu\).*meta"):
        crossent.cross_entropy(x, t, weight=torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match=r"`pos_weight` on the device of `input`"):
        crossent.binary_cross_entropy_with_logits(
            x, torch.ones(4, 3), pos_weight=torch.ones(3, device="meta")
        )
    with pytest.raises(ValueError, match=r"`target` on the device of `input`"):
        crossent.linear_cross_entropy(torch.randn(4, 2), torch.randn(3, 2), t.to("meta"))


EXTREME = ["nce", "nfl", "apl", "sce", "unified_focal"]


@pytest.mark.parametrize("name", EXTREME)
@pytest.mark.parametrize("scale", [1e38, 3e38])
def test_logits_near_the_float32_limit_give_the_float64_value_and_finite_gradients(name, scale):
    args, leaf = inputs(registry.loss_kind(name), seed=1)
    z64 = leaf.detach() / leaf.detach().abs().amax() * scale
    z32 = z64.float().requires_grad_()
    loss = registry.get_loss(name)(z32, args[1])
    (grad,) = torch.autograd.grad(loss, z32)
    want = registry.get_loss(name)(z64, args[1])
    assert loss.dtype == torch.float32
    assert math.isfinite(float(loss.detach())) and bool(torch.isfinite(grad).all())
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=0)


def test_a_mean_of_finite_losses_near_the_float32_limit_is_finite():
    # per-row losses of ~1e38 sum past float32's largest value; their mean does not
    z = torch.tensor([[1.5e38, -1.5e38]] * 4, requires_grad=True)
    loss = crossent.cross_entropy(z, torch.tensor([1, 1, 1, 1]))
    assert math.isfinite(float(loss)) and abs(float(loss) / 3e38 - 1) < 1e-6


@pytest.mark.parametrize("name", ["weight", "pos_weight"])
def test_negative_element_weights_are_refused_like_negative_class_weights(name):
    x, y = torch.zeros(2, 3), torch.ones(2, 3)
    bad = torch.tensor([1.0, -0.5, 1.0])
    with pytest.raises(ValueError, match=rf"`{name}` to be finite and >= 0"):
        crossent.binary_cross_entropy_with_logits(x, y, **{name: bad})
    with pytest.raises(ValueError, match=r"`weight` to be finite and >= 0"):
        crossent.cross_entropy(x, torch.tensor([0, 1]), weight=bad)
    crossent.set_validation(False)  # the documented switch turns the value check off
    crossent.binary_cross_entropy_with_logits(x, y, **{name: bad})


@pytest.mark.parametrize(
    ("size_average", "reduce", "reduction"),
    [(None, False, "none"), (False, None, "sum"), (True, True, "mean"), (False, False, "none")],
)
def test_pytorchs_deprecated_size_average_and_reduce_keep_their_meaning(
    size_average, reduce, reduction
):
    x, t = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1])
    legacy = dict(size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning, match=f"please use reduction='{reduction}'"):
        got = crossent.cross_entropy(x, t, **legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = torch.nn.functional.cross_entropy(x, t, **legacy)
        module = crossent.nn.CrossEntropyLoss(**legacy)
        nll = crossent.nll_loss(x.log_softmax(1), t, **legacy)
        bce = crossent.binary_cross_entropy_with_logits(x, torch.ones_like(x), **legacy)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(module(x, t), want)
    torch.testing.assert_close(nll, want)
    torch.testing.assert_close(
        bce,
        torch.nn.functional.binary_cross_entropy_with_logits(
            x, torch.ones_like(x), reduction=reduction
        ),
    )


def test_pytorchs_positional_order_is_kept():
    x, t = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, -1, 2, 3, 1])
    w = torch.rand(4, dtype=torch.float64)
    want = torch.nn.functional.cross_entropy(x, t, w, None, -1, None, "sum", 0.1)
    torch.testing.assert_close(crossent.cross_entropy(x, t, w, None, -1, None, "sum", 0.1), want)
    module = crossent.nn.CrossEntropyLoss(w, None, -1, None, "sum", 0.1)
    torch.testing.assert_close(module(x, t), want)
    with pytest.raises(TypeError, match=r"`size_average` to be a bool or None, but got -100"):
        crossent.cross_entropy(x, t, w, -100)  # crossent's old order: ignore_index there


def test_argument_errors_are_also_runtime_errors_as_pytorch_raises_them():
    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    for call in (
        lambda: crossent.cross_entropy(x, t, weight=torch.ones(3)),
        lambda: crossent.cross_entropy(x, torch.tensor([0, 1])),
        lambda: crossent.cross_entropy(x, t, label_smoothing=2.0),
    ):
        with pytest.raises(RuntimeError):
            call()
        with pytest.raises(ValueError):
            call()


def test_a_class_weight_of_another_dtype_is_cast_as_documented():
    x, t = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])  # float32 weight, float64 logits
    got = crossent.cross_entropy(x, t, weight=w)
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(x, t, weight=w.double()))
