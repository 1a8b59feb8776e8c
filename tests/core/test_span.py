import math

import pytest
import torch

import crossent
from crossent.core.span import (
    span_entropies,
    span_min_achievable_loss,
    span_neighbours,
    span_smoothed_targets,
)


def reference(tags, k, s, ignore=-100):
    """The documented formula, token by token, in float64 (docs/losses.md)."""
    b, t = tags.shape
    out = torch.zeros(b, t, k, dtype=torch.float64)
    for i in range(b):
        row = tags[i].tolist()
        kept = [j for j in range(t) if row[j] != ignore]
        for n, j in enumerate(kept):
            y = row[j]
            left = row[kept[n - 1]] if n > 0 else None
            right = row[kept[n + 1]] if n + 1 < len(kept) else None
            differing = [v for v in (left, right) if v is not None and v != y]
            out[i, j, y] = 1 - s
            if differing:
                for v in differing:
                    out[i, j, v] += s / len(differing)
            else:
                for c in range(k):
                    if c != y:
                        out[i, j, c] = s / (k - 1)
    return out


def test_matches_the_reference_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    for k, s in ((2, 0.3), (5, 0.1), (9, 0.5), (9, 0.0)):
        tags = torch.randint(0, k, (6, 11), generator=g)
        tags[torch.rand(6, 11, generator=g) < 0.25] = -100  # padding anywhere, also inside
        tags[0] = -100  # an all-ignored row
        got = span_smoothed_targets(tags, k, s, dtype=torch.float64)
        torch.testing.assert_close(got, reference(tags, k, s), rtol=0, atol=1e-15)
        sums = got.sum(-1)
        torch.testing.assert_close(sums, (tags != -100).double())


def test_documented_cases():
    # O B-PER I-PER I-PER O O, K = 4 (O, B-PER, I-PER, B-LOC), s = 0.2
    p = span_smoothed_targets(torch.tensor([[0, 1, 2, 2, 0, 0]]), 4, 0.2, dtype=torch.float64)[0]
    expected = [
        [0.8, 0.2, 0.0, 0.0],  # O before the span: s to B-PER
        [0.1, 0.8, 0.1, 0.0],  # B-PER: s/2 to O, s/2 to I-PER
        [0.0, 0.2, 0.8, 0.0],  # first I-PER: s to B-PER (right neighbour is the same tag)
        [0.2, 0.0, 0.8, 0.0],  # last I-PER: s to O
        [0.8, 0.0, 0.2, 0.0],  # O after the span: s to I-PER
        [0.8, 0.2 / 3, 0.2 / 3, 0.2 / 3],  # O inside a run of O, at the end: others smoothing
    ]
    torch.testing.assert_close(p, torch.tensor(expected, dtype=torch.float64))
    # both neighbours carry the same other tag: the whole s to it
    p = span_smoothed_targets(torch.tensor([[0, 3, 0]]), 4, 0.2, dtype=torch.float64)[0, 1]
    torch.testing.assert_close(p, torch.tensor([0.2, 0.0, 0.0, 0.8], dtype=torch.float64))


def test_neighbours_skip_ignored_positions():
    left, right = span_neighbours(torch.tensor([[1, -100, 2, 3, -100]]))
    assert left.tolist() == [[-1, -1, 1, 2, -1]]
    assert right.tolist() == [[2, -1, 3, -1, -1]]


def test_minimum_loss_is_the_entropy_and_is_reached():
    tags = torch.tensor([[0, 0, 1, 2, 0, 0, 3, 0, -100]])
    k, s = 4, 0.15
    h0, h1, h2 = span_entropies(k, s)
    # O inside O, O before B, B between O and I, I between B and O, O after I, O before
    # B-LOC, B-LOC between two O (one tag), O at the end after B-LOC; then padding
    cases = [h0, h1, h2, h2, h1, h1, h1, h1, 0.0]
    per_token = span_min_achievable_loss(tags, k, s, reduction="none")[0].tolist()
    assert per_token == pytest.approx(cases, abs=1e-12)
    mean = float(span_min_achievable_loss(tags, k, s))
    assert mean == pytest.approx(sum(cases) / 8, abs=1e-12)
    assert float(span_min_achievable_loss(tags, k, s, reduction="sum")) == pytest.approx(
        sum(cases), abs=1e-12
    )
    # CE against the span targets reaches exactly that at the logits log P
    target = span_smoothed_targets(tags, k, s, dtype=torch.float64)[tags != -100]
    logits = torch.log(target.clamp_min(1e-300))
    assert float(crossent.cross_entropy(logits, target)) == pytest.approx(mean, abs=1e-9)
    assert h0 == pytest.approx(-(0.85 * math.log(0.85)) - 0.15 * math.log(0.05), abs=1e-12)
    assert h1 == pytest.approx(-(0.85 * math.log(0.85)) - 0.15 * math.log(0.15), abs=1e-12)
    assert h2 == pytest.approx(-(0.85 * math.log(0.85)) - 0.15 * math.log(0.075), abs=1e-12)
    assert float(span_min_achievable_loss(tags, k, 0.0)) == 0.0


def test_bad_input_is_one_line():
    cases = [
        (torch.tensor([0, 1, 2]), 3, 0.1, ValueError, "per-sample targets"),
        (torch.zeros(2, 3), 3, 0.1, TypeError, "integer tag ids"),
        (torch.tensor([[0, 5]]), 3, 0.1, ValueError, r"tag ids in \[0, 3\)"),
        (torch.tensor([[0, 1]]), 3, 0.6, ValueError, "label_smoothing"),
        (torch.tensor([[0, 1]]), 1, 0.1, ValueError, "num_classes"),
    ]
    for tags, k, s, error, match in cases:
        with pytest.raises(error, match=match) as info:
            span_smoothed_targets(tags, k, s)
        assert "\n" not in str(info.value)
