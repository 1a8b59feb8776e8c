"""smoothing="span" as an engine option: every engine loss against span-smoothed targets.

The reference builds the target distribution token by token from the definition
(docs/losses.md) in float64 and evaluates each loss on the kept tokens as probability targets.
"""

import math

import pytest
import torch

import crossent
from crossent import registry
from crossent.nn import TermModule

TAGS = torch.tensor([[0, 1, 2, 0, 0, 3, -100], [4, 4, 0, 1, 2, 2, 0]])
K = 5
MULTICLASS = [n for n in registry.available_losses() if registry.loss_kind(n) == "multiclass"]


def reference_targets(tags, k, s, ignore=-100):
    """P_i from the definition: 1-s on y_i; s over the differing neighbours' tags on a
    boundary (s/2 each for two), s/(K-1) to every other tag inside."""
    out = torch.zeros(*tags.shape, k, dtype=torch.float64)
    for b, row in enumerate(tags.tolist()):
        kept = [i for i, y in enumerate(row) if y != ignore]
        for j, i in enumerate(kept):
            y = row[i]
            sides = [row[kept[j - 1]]] if j > 0 else []
            sides += [row[kept[j + 1]]] if j + 1 < len(kept) else []
            differing = [n for n in sides if n != y]
            out[b, i, y] = 1 - s
            if differing:
                for n in differing:
                    out[b, i, n] += s / len(differing)
            else:
                for c in range(k):
                    if c != y:
                        out[b, i, c] = s / (k - 1)
    return out


def test_the_targets_match_the_definition():
    from crossent.core.span import span_smoothed_targets

    got = span_smoothed_targets(TAGS, K, 0.2, dtype=torch.float64)
    torch.testing.assert_close(got, reference_targets(TAGS, K, 0.2), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_multiclass_loss_takes_span_smoothing(name, reduction):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, K, 7, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(label_smoothing=0.15, smoothing="span", reduction=reduction)
    got = registry.get_loss(name, **kw)(z, TAGS)
    keep = TAGS != -100
    p = reference_targets(TAGS, K, 0.15)[keep]
    x = z.detach().transpose(1, 2)[keep].clone().requires_grad_()
    plain = registry.get_loss(name, reduction="none", label_smoothing=0.0, smoothing="uniform")
    per_token = plain(x, p)
    if reduction == "none":
        want = torch.zeros(TAGS.shape, dtype=torch.float64).masked_scatter(keep, per_token)
    else:
        want = per_token.sum() / (keep.sum() if reduction == "mean" else 1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g_got,) = torch.autograd.grad(got.sum(), z)
    (g_want,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_got.transpose(1, 2)[keep], g_want, rtol=1e-9, atol=1e-12)
    assert bool((g_got.transpose(1, 2)[~keep] == 0).all())


def test_gradcheck_of_span_smoothed_sgce():
    z = torch.randn(2, K, 7, dtype=torch.float64, requires_grad=True)
    fn = lambda x: crossent.smooth_generalized_cross_entropy(  # noqa: E731
        x, TAGS, q=0.7, label_smoothing=0.1, smoothing="span"
    )
    assert torch.autograd.gradcheck(fn, (z,))


def test_zero_smoothing_is_the_plain_loss():
    z = torch.randn(2, K, 7, dtype=torch.float64)
    got = crossent.cross_entropy(z, TAGS, label_smoothing=0.0, smoothing="span")
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(z, TAGS))


def test_min_achievable_loss_of_ce_is_the_mean_token_entropy():
    s = 0.1
    p = reference_targets(TAGS, K, s)[TAGS != -100]
    want = float(-(torch.special.xlogy(p, p)).sum(1).mean())
    got = crossent.min_achievable_loss(K, s, "span", target=TAGS)
    assert got == pytest.approx(want, abs=1e-12)
    # reached by the logits log P
    logits = torch.log(reference_targets(TAGS, K, s).clamp_min(1e-300)).transpose(1, 2)
    value = crossent.cross_entropy(logits, TAGS, label_smoothing=s, smoothing="span")
    assert float(value) == pytest.approx(want, abs=1e-9)
    with pytest.raises(ValueError, match=r"`target` the tags \(B, T\) with smoothing='span'"):
        crossent.min_achievable_loss(K, s, "span")


@pytest.mark.parametrize(
    ("logits", "target", "match"),
    [
        (torch.randn(4, K), torch.tensor([0, 1, 2, 3]), r"'span' smooths along a sequence"),
        (
            torch.randn(2, K, 3, 2),
            torch.zeros(2, 3, 2, dtype=torch.long),
            r"needs logits \(N, K, T\)",
        ),
        (
            torch.randn(2, K, 3),
            torch.softmax(torch.randn(2, K, 3), 1),
            r"'uniform' for probability",
        ),
    ],
)
def test_span_smoothing_is_refused_without_a_sequence_of_class_indices(logits, target, match):
    with pytest.raises(ValueError, match=match):
        crossent.cross_entropy(logits, target, label_smoothing=0.1, smoothing="span")


def test_span_smoothing_beyond_one_half_is_refused():
    with pytest.raises(ValueError, match=r"`label_smoothing` in \[0, 0.5\] with smoothing='span'"):
        crossent.focal_loss(torch.randn(2, K, 7), TAGS, label_smoothing=0.6, smoothing="span")


def test_the_vocabulary_parallel_losses_refuse_span_smoothing_clearly():
    from crossent.distributed.loss import term_and_options

    with pytest.raises(ValueError, match=r"`smoothing` 'uniform' or 'others' for the vocab"):
        term_and_options("ce", {"label_smoothing": 0.1, "smoothing": "span"})


def test_every_term_module_accepts_span_smoothing():
    for name in MULTICLASS:
        if issubclass(registry.loss_class(name), TermModule):
            module = registry.get_loss(name, label_smoothing=0.1, smoothing="span")
            assert module.engine_options()["smoothing"] == "span"
    assert math.isfinite(
        float(crossent.mae_loss(torch.randn(2, K, 7), TAGS, label_smoothing=0.1, smoothing="span"))
    )
