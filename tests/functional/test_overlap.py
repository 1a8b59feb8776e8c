import math

import pytest
import torch

from crossent.functional.overlap import (
    dice_loss,
    focal_tversky_loss,
    tversky_loss,
    unified_focal_loss,
)
from crossent.nn.overlap import DiceLoss, FocalTverskyLoss, TverskyLoss, UnifiedFocalLoss
from tests import reference_overlap as ref


def _data(mode, n=3, k=4, shape=(5, 6), ignore=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        logits = torch.randn(n, k, *shape, generator=g, dtype=torch.float64) * 2
        target = torch.randint(0, k, (n, *shape), generator=g)
        if ignore:
            target[torch.rand(target.shape, generator=g) < 0.2] = -100
    elif mode == "binary":
        logits = torch.randn(n, 1, *shape, generator=g, dtype=torch.float64) * 2
        target = (torch.rand(logits.shape, generator=g) < 0.3).double()
        if ignore:
            target[torch.rand(target.shape, generator=g) < 0.2] = -100
    else:
        logits = torch.randn(n, k, *shape, generator=g, dtype=torch.float64) * 2
        target = (torch.rand(logits.shape, generator=g) < 0.3).double()
        if ignore:
            target[torch.rand(target.shape, generator=g) < 0.2] = -100
    return logits, target


MODES = ["multiclass", "binary", "multilabel"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_tversky_family_matches_reference(mode, per_image, ignore, reduction):
    logits, target = _data(mode, ignore=ignore)
    alpha, beta, gamma, smooth = 0.3, 0.7, 0.75, 1.0
    ti = ref.tversky_index(logits, target, alpha, beta, mode, smooth, per_image)
    dice = ref.dice_coefficient(logits, target, mode, smooth, per_image)
    kw = dict(mode=mode, per_image=per_image, reduction=reduction)
    torch.testing.assert_close(tversky_loss(logits, target, **kw), ref.reduce(1 - ti, reduction))
    torch.testing.assert_close(
        focal_tversky_loss(logits, target, **kw), ref.reduce((1 - ti) ** gamma, reduction)
    )
    torch.testing.assert_close(dice_loss(logits, target, **kw), ref.reduce(1 - dice, reduction))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_reference(mode):
    logits, target = _data(mode, ignore=True)
    x = logits.clone().requires_grad_()
    focal_tversky_loss(x, target, mode=mode, alpha=0.4, beta=0.9, gamma=0.6, smooth=0.5).backward()
    y = logits.clone().requires_grad_()
    ti = ref.tversky_index(y, target, 0.4, 0.9, mode, 0.5)
    ((1 - ti) ** 0.6).mean().backward()
    torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("asymmetric", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
def test_unified_focal_matches_reference(mode, asymmetric, per_image):
    logits, target = _data(mode, k=3)
    x = logits.clone().requires_grad_()
    got = unified_focal_loss(
        x,
        target,
        weight=0.3,
        delta=0.7,
        gamma=0.4,
        asymmetric=asymmetric,
        mode=mode,
        per_image=per_image,
        reduction="none",
    )
    y = logits.clone().requires_grad_()
    want = ref.unified_focal(y, target, 0.3, 0.7, 0.4, asymmetric, mode, per_image=per_image)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("asymmetric", [True, False])
@pytest.mark.parametrize("weight", [0.5, 0.2])
def test_unified_focal_matches_authors_code(asymmetric, weight):
    # Their code: two softmax channels, Tversky per image, smoothing 1e-7, `weight` on the
    # Tversky part (the paper puts lambda on the focal part: weight <-> 1 - weight).
    logits, target = _data("multiclass", n=2, k=2, shape=(6, 7))
    probs = torch.softmax(logits, 1).permute(0, 2, 3, 1)
    onehot = torch.nn.functional.one_hot(target, 2).double()
    want = ref.unified_focal_authors_code(onehot, probs, 1 - weight, 0.6, 0.5, asymmetric)
    got = unified_focal_loss(
        logits, target, weight=weight, asymmetric=asymmetric, smooth=1e-7, per_image=True
    )
    torch.testing.assert_close(got, want)


def test_unified_focal_defaults():
    logits, target = _data("multiclass", k=2)
    want = ref.unified_focal(logits, target, 0.5, 0.6, 0.5, True, "multiclass")
    torch.testing.assert_close(unified_focal_loss(logits, target), want)
    torch.testing.assert_close(UnifiedFocalLoss()(logits, target), want)


def test_tversky_half_half_is_dice():
    for mode in MODES:
        logits, target = _data(mode, ignore=True)
        for per_image in (False, True):
            kw = dict(mode=mode, per_image=per_image, smooth=1.0)
            torch.testing.assert_close(
                tversky_loss(logits, target, alpha=0.5, beta=0.5, **kw),
                dice_loss(logits, target, **kw),
            )


def test_identities():
    logits, target = _data("multiclass")
    # gamma = 1 is the Tversky loss
    torch.testing.assert_close(
        focal_tversky_loss(logits, target, gamma=1.0), tversky_loss(logits, target)
    )
    # alpha = beta = 1 is the soft Jaccard (IoU) loss
    torch.testing.assert_close(
        tversky_loss(logits, target, alpha=1.0, beta=1.0),
        (1 - ref.jaccard_index(logits, target, "multiclass")).mean(),
    )
    # smooth = 0: the plain 2TP / (|P| + |G|)
    p = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).double()
    dims = (0, 2, 3)
    plain = 2 * (p * onehot).sum(dims) / (p.sum(dims) + onehot.sum(dims))
    torch.testing.assert_close(dice_loss(logits, target, smooth=0.0), (1 - plain).mean())


def test_unified_focal_special_cases():
    logits, target = _data("multiclass", k=2)
    # weight = 1, delta = 0.5, gamma = 0: half the cross-entropy
    ce = torch.nn.functional.cross_entropy(logits, target)
    got = unified_focal_loss(logits, target, weight=1.0, delta=0.5, gamma=0.0)
    torch.testing.assert_close(got, 0.5 * ce)
    # weight = 0, delta = 0.5, gamma = 0: the Dice loss
    got = unified_focal_loss(logits, target, weight=0.0, delta=0.5, gamma=0.0, asymmetric=False)
    torch.testing.assert_close(got, dice_loss(logits, target))


def test_binary_modes_agree_with_two_class_softmax():
    z = torch.randn(3, 1, 4, 5, dtype=torch.float64)
    y = (torch.rand(3, 1, 4, 5) < 0.4).double()
    two = torch.cat([torch.zeros_like(z), z], 1)  # softmax(0, z)[1] = sigmoid(z)
    idx = y[:, 0].long()
    torch.testing.assert_close(
        unified_focal_loss(z, y, mode="binary"), unified_focal_loss(two, idx)
    )
    torch.testing.assert_close(
        dice_loss(z, y, mode="binary"), dice_loss(two, idx, reduction="none")[1]
    )
    # a binary target may leave out the channel dimension of (N, 1, ...) logits
    torch.testing.assert_close(dice_loss(z, y[:, 0], mode="binary"), dice_loss(z, y, mode="binary"))
    # multilabel is the mean over channels of binary problems
    z2 = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    y2 = (torch.rand(3, 2, 4, 5) < 0.4).double()
    per_channel = [unified_focal_loss(z2[:, c], y2[:, c], mode="binary") for c in range(2)]
    torch.testing.assert_close(
        unified_focal_loss(z2, y2, mode="multilabel"), torch.stack(per_channel).mean()
    )


def test_ignore_index_equals_dropping_pixels():
    logits, target = _data("multiclass", n=1, shape=(12,))
    target[0, [1, 5, 6]] = -100
    keep = target[0] != -100
    for fn in (dice_loss, tversky_loss, focal_tversky_loss, unified_focal_loss):
        torch.testing.assert_close(
            fn(logits, target), fn(logits[..., keep], target[..., keep]), msg=fn.__name__
        )


def test_soft_multiclass_targets_equal_onehot():
    logits, target = _data("multiclass")
    onehot = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).double()
    for fn in (dice_loss, focal_tversky_loss, unified_focal_loss):
        torch.testing.assert_close(fn(logits, onehot), fn(logits, target))


def test_hand_numbers():
    # p = 0.5 everywhere: TP = FP = FN = 0.5 per class -> 1 - 1.5 / 2 = 0.25
    assert dice_loss(torch.zeros(1, 2, 2), torch.tensor([[0, 1]])).item() == 0.25
    # binary, p = 0.5, g = (1, 1, 0, 0): TP = FP = FN = 1 -> (0.3 + 0.7) / 3
    logits, target = torch.zeros(1, 1, 4), torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    assert tversky_loss(logits, target, mode="binary").item() == pytest.approx(1 / 3)
    ft = focal_tversky_loss(logits, target, mode="binary").item()
    assert ft == pytest.approx((1 / 3) ** 0.75)
    # perfect, confident prediction: loss close to 0
    z = torch.tensor([[[20.0, -20.0], [-20.0, 20.0]]])
    assert dice_loss(z, torch.tensor([[0, 1]])).item() < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    logits, target = _data(mode, n=2, k=3, shape=(3,), ignore=True)
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: dice_loss(z, target, mode=mode), (x,))
    assert torch.autograd.gradcheck(
        lambda z: focal_tversky_loss(z, target, mode=mode, per_image=True), (x,)
    )
    assert torch.autograd.gradcheck(
        lambda z: unified_focal_loss(z, target.clamp_min(0), mode=mode, asymmetric=False), (x,)
    )


@pytest.mark.parametrize("fn", [dice_loss, tversky_loss, focal_tversky_loss, unified_focal_loss])
@pytest.mark.parametrize("scale", [30.0, 200.0])
def test_extreme_logits_stay_finite(fn, scale):
    for mode in MODES:
        logits, target = _data(mode, shape=(4,))
        x = (torch.sign(logits) * scale).float().requires_grad_()
        loss = fn(x, target, mode=mode)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all(), (mode, scale)
    # perfect prediction: 1 - TI = 0 exactly, (1 - TI)^0.75 has an infinite slope there
    z = torch.tensor([[[200.0, -200.0], [-200.0, 200.0]]], requires_grad=True)
    out = fn(z, torch.tensor([[0, 1]]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


def test_half_input_gives_float32():
    logits, target = _data("multiclass")
    out = dice_loss(logits.half(), target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), dice_loss(logits, target), atol=2e-3, rtol=0)


def test_reduction_shapes():
    logits, target = _data("multiclass", n=3, k=4)
    assert dice_loss(logits, target, reduction="none").shape == (4,)
    assert dice_loss(logits, target, per_image=True, reduction="none").shape == (3, 4)
    none = tversky_loss(logits, target, per_image=True, reduction="none")
    torch.testing.assert_close(
        tversky_loss(logits, target, per_image=True, reduction="sum"), none.sum()
    )
    assert unified_focal_loss(logits, target, per_image=True, reduction="none").shape == (3,)
    assert unified_focal_loss(logits, target, reduction="none").shape == ()
    z, y = _data("multilabel", k=5)
    assert dice_loss(z, y, mode="multilabel", reduction="none").shape == (5,)
    z, y = _data("binary")
    assert dice_loss(z, y, mode="binary", per_image=True, reduction="none").shape == (3, 1)


def test_modules_equal_functions():
    logits, target = _data("multiclass", ignore=True)
    kw = dict(per_image=True, smooth=0.5, reduction="sum")
    torch.testing.assert_close(DiceLoss(**kw)(logits, target), dice_loss(logits, target, **kw))
    torch.testing.assert_close(
        TverskyLoss(alpha=0.2, beta=0.8, **kw)(logits, target),
        tversky_loss(logits, target, alpha=0.2, beta=0.8, **kw),
    )
    torch.testing.assert_close(
        FocalTverskyLoss(gamma=1.5, **kw)(logits, target),
        focal_tversky_loss(logits, target, gamma=1.5, **kw),
    )
    torch.testing.assert_close(
        UnifiedFocalLoss(weight=0.7, asymmetric=False, **kw)(logits, target),
        unified_focal_loss(logits, target, weight=0.7, asymmetric=False, **kw),
    )
    assert "alpha=0.2" in repr(TverskyLoss(alpha=0.2))


BAD = [
    (dice_loss, {"mode": "sparse"}, ValueError, r"`mode` to be one of 'multiclass'"),
    (dice_loss, {"smooth": -1.0}, ValueError, r"`smooth` in \[0, inf\)"),
    (dice_loss, {"per_image": 1}, TypeError, r"`per_image` to be a bool"),
    (dice_loss, {"reduction": "avg"}, ValueError, r"`reduction`"),
    (tversky_loss, {"alpha": -0.1}, ValueError, r"`alpha` in \[0, inf\)"),
    (tversky_loss, {"beta": -1}, ValueError, r"`beta` in \[0, inf\)"),
    (tversky_loss, {"alpha": 0.0, "beta": 0.0}, ValueError, r"`alpha \+ beta` > 0"),
    (focal_tversky_loss, {"gamma": -0.5}, ValueError, r"`gamma` in \[0, inf\)"),
    (unified_focal_loss, {"weight": 1.5}, ValueError, r"`weight` in \[0, 1\]"),
    (unified_focal_loss, {"delta": -0.1}, ValueError, r"`delta` in \[0, 1\]"),
    (unified_focal_loss, {"gamma": 2.0}, ValueError, r"`gamma` in \[0, 1\]"),
    (unified_focal_loss, {"asymmetric": "yes"}, TypeError, r"`asymmetric` to be a bool"),
]


@pytest.mark.parametrize(("fn", "kwargs", "exc", "match"), BAD)
def test_bad_settings_raise(fn, kwargs, exc, match):
    logits, target = _data("multiclass")
    with pytest.raises(exc, match=match):
        fn(logits, target, **kwargs)
    module = {
        dice_loss: DiceLoss,
        tversky_loss: TverskyLoss,
        focal_tversky_loss: FocalTverskyLoss,
        unified_focal_loss: UnifiedFocalLoss,
    }[fn]
    with pytest.raises(exc, match=match):
        module(**kwargs)


def test_bad_inputs_raise():
    logits, target = _data("multiclass")
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        dice_loss(logits, torch.full_like(target, 4))
    with pytest.raises(ValueError, match="class-index `target` of shape"):
        dice_loss(logits, target[:, :2])
    with pytest.raises(ValueError, match="K >= 2"):
        dice_loss(logits[:, :1], target)
    z, y = _data("binary")
    with pytest.raises(ValueError, match=r"`target` in \[0, 1\]"):
        dice_loss(z, y * 2, mode="binary")
    with pytest.raises(ValueError, match="shape of `input`"):
        dice_loss(z, y[:, :, :2], mode="binary")
    with pytest.raises(TypeError, match="floating dtype"):
        dice_loss(target, target)


def test_all_ignored_gives_zero_loss_and_gradient():
    logits, target = _data("multiclass")
    x = logits.clone().requires_grad_()
    loss = dice_loss(x, torch.full_like(target, -100)) + unified_focal_loss(
        x, torch.full_like(target, -100)
    )
    loss.backward()
    assert loss.item() == 0.0
    assert x.grad.abs().max().item() == 0.0
    # smooth = 0 and an empty batch: no 0 / 0
    assert math.isfinite(tversky_loss(logits[:0], target[:0], smooth=0.0).item())
