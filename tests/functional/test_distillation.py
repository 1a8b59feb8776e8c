"""distillation_loss: forward / reverse KL, JSD, mixed; temperature; labels."""

import pytest
import torch
import torch.nn.functional as F

import crossent.nn
from crossent.functional import cross_entropy, distillation_loss
from tests import reference
from tests.functional.helpers import assert_matches

DIVERGENCES = ["forward_kl", "reverse_kl", "jsd", "mixed"]


def _pair(n=6, k=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (2 * torch.randn(n, k, generator=g, dtype=dtype)).requires_grad_()
    t = 2 * torch.randn(n, k, generator=g, dtype=dtype)
    return s, t


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_matches_reference(divergence, temperature):
    s, t = _pair()
    kw = dict(temperature=temperature, divergence=divergence, mix=0.3)
    assert_matches(
        lambda z: distillation_loss(z, t, **kw),
        lambda z: reference.distillation(z, t, **kw).mean(),
        s,
    )
    assert torch.autograd.gradcheck(lambda z: distillation_loss(z, t, **kw), (s,))


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_divergence_of_a_distribution_with_itself_is_zero(divergence, dtype):
    s, _ = _pair(n=32, k=100, dtype=dtype)
    loss = distillation_loss(s, s.detach(), temperature=3.0, divergence=divergence)
    # exactly 0: the teacher's log-probabilities are formed as the engine forms the student's
    assert loss.item() == 0.0
    (g,) = torch.autograd.grad(loss, s)
    assert g.abs().max().item() < 1e-6


def test_forward_kl_gradient_is_t_times_softmax_difference():
    s, t = _pair()
    loss = distillation_loss(s, t, temperature=2.0, reduction="sum")
    (g,) = torch.autograd.grad(loss, s)
    want = 2.0 * (torch.softmax(s.detach() / 2, 1) - torch.softmax(t / 2, 1))
    torch.testing.assert_close(g, want)


def test_teacher_gets_no_gradient():
    s, t = _pair()
    t.requires_grad_()
    distillation_loss(s, t, temperature=2.0).backward()
    assert t.grad is None and s.grad is not None


def test_labels_mix_with_cross_entropy_and_ignored_rows_are_excluded():
    s, t = _pair()
    y = torch.tensor([0, -100, 2, 3, -100, 1])
    keep = y != -100
    got = distillation_loss(s, t, temperature=2.0, labels=y, alpha=0.4)
    div = reference.distillation(s, t, temperature=2.0)[keep].mean()
    ce = F.cross_entropy(s, y)
    torch.testing.assert_close(got, 0.4 * ce + 0.6 * div)
    (g,) = torch.autograd.grad(got, s)
    assert bool((g[~keep] == 0).all())
    # alpha = 0 with labels: only the divergence, over the kept rows
    got0 = distillation_loss(s, t, labels=y)
    torch.testing.assert_close(got0, reference.distillation(s, t)[keep].mean())
    per = distillation_loss(s, t, labels=y, alpha=0.4, reduction="none")
    assert per.shape == (6,) and bool((per[~keep] == 0).all())
    torch.testing.assert_close(
        per[keep].sum(), distillation_loss(s, t, labels=y, alpha=0.4, reduction="sum")
    )


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_all_labels_ignored_gives_zero_loss_and_zero_gradient(alpha):
    s, t = _pair()
    y = torch.full((s.shape[0],), -100)
    loss = distillation_loss(s, t, temperature=2.0, labels=y, alpha=alpha)
    loss.backward()
    assert loss.item() == 0.0
    assert bool((s.grad == 0).all())


def test_without_labels_alpha_has_no_effect():
    s, t = _pair()
    torch.testing.assert_close(distillation_loss(s, t, alpha=0.7), distillation_loss(s, t))


def test_alpha_one_is_cross_entropy():
    s, t = _pair()
    y = torch.randint(0, 5, (6,))
    torch.testing.assert_close(
        distillation_loss(s, t, labels=y, alpha=1.0, temperature=4.0), cross_entropy(s, y)
    )


def test_kdim_averages_over_rows_and_positions():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    t = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    flat = lambda z: z.movedim(1, -1).reshape(-1, 4)  # noqa: E731
    got = distillation_loss(s, t, temperature=2.0, divergence="jsd")
    torch.testing.assert_close(got, reference.distillation(flat(s), flat(t), 2.0, "jsd").mean())


def test_extreme_logits_finite():
    s = torch.tensor([[1e4, -1e4, 0.0], [0.0, 30.0, -30.0]]).requires_grad_()
    t = torch.tensor([[-1e4, 1e4, 0.0], [30.0, 0.0, -30.0]])
    for divergence in DIVERGENCES:
        loss = distillation_loss(s, t, divergence=divergence)
        (g,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(g).all()
        if divergence == "jsd":
            assert torch.isfinite(loss)


def test_module_and_bad_settings():
    s, t = _pair()
    m = crossent.nn.DistillationLoss(temperature=2.0, divergence="mixed", mix=0.2)
    torch.testing.assert_close(
        m(s, t), distillation_loss(s, t, temperature=2.0, divergence="mixed", mix=0.2)
    )
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, temperature=0.0)
    with pytest.raises(ValueError, match="mix"):
        crossent.nn.DistillationLoss(mix=1.5)
    with pytest.raises(ValueError, match="divergence"):
        distillation_loss(s, t, divergence="kl")
    with pytest.raises(ValueError, match="shape"):
        distillation_loss(s, t[:, :3])
    with pytest.raises(ValueError, match="`labels`"):
        distillation_loss(s, t, labels=torch.tensor([0, 1, 2, 3, 4, 7]))
