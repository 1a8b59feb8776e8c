import pytest
import torch

from crossent.data import load_dataset
from crossent.data.tag_noise import inject_tag_noise
from crossent.data.tags import entity_spans


@pytest.fixture(scope="module")
def corpus():
    ds = load_dataset("synthetic-ner", seed=0, sentences=400)
    return ds.train.y, list(ds.class_names)


def _spans(tags, names):
    return [
        (row, *s)
        for row, values in enumerate(tags.tolist())
        for s in entity_spans([names[t] for t in values if t != -100])
    ]


def test_symmetric_flips_an_exact_share_of_tokens_and_never_padding(corpus):
    tags, names = corpus
    tokens = int((tags != -100).sum())
    for rate in (0.0, 0.2, 0.6, 1.0):
        noisy = inject_tag_noise(tags, rate, "symmetric", names, seed=1)
        assert int((noisy != tags).sum()) == round(rate * tokens)
        assert torch.equal(noisy == -100, tags == -100)
    again = inject_tag_noise(tags, 0.2, "symmetric", names, seed=1)
    assert torch.equal(again, inject_tag_noise(tags, 0.2, "symmetric", names, seed=1))
    assert not torch.equal(again, inject_tag_noise(tags, 0.2, "symmetric", names, seed=2))


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_span_type_swaps_whole_spans_at_an_exact_rate(corpus, rate):
    tags, names = corpus
    clean = _spans(tags, names)
    noisy = inject_tag_noise(tags, rate, "span-type", names, seed=0)
    after = _spans(noisy, names)
    # same boundaries, same number of spans; exactly round(rate * S) change type
    assert [(r, a, b) for r, _, a, b in after] == [(r, a, b) for r, _, a, b in clean]
    changed = sum(x[1] != y[1] for x, y in zip(clean, after, strict=True))
    assert changed == round(rate * len(clean))
    assert torch.equal(noisy == -100, tags == -100)
    assert torch.equal(noisy == 0, tags == 0)  # O stays O


def test_span_missed_removes_an_exact_share_of_spans(corpus):
    tags, names = corpus
    spans = len(_spans(tags, names))
    noisy = inject_tag_noise(tags, 0.4, "span-missed", names, seed=0)
    assert len(_spans(noisy, names)) == spans - round(0.4 * spans)
    changed = noisy != tags
    assert bool((noisy[changed] == 0).all())  # only to O


def test_span_boundary_moves_one_boundary_by_one_token(corpus):
    tags, names = corpus
    clean = _spans(tags, names)
    noisy = inject_tag_noise(tags, 0.5, "span-boundary", names, seed=3)
    after = _spans(noisy, names)
    assert len(after) == len(clean)
    moved = 0
    for (r0, t0, a0, b0), (r1, t1, a1, b1) in zip(clean, after, strict=True):
        assert (r0, t0) == (r1, t1)
        shift = abs(a1 - a0) + abs(b1 - b0)
        assert shift in (0, 1)
        moved += shift
    assert moved == round(0.5 * len(clean))  # every span of this corpus can move
    assert torch.equal(noisy == -100, tags == -100)


def test_bad_input_is_one_line():
    names = ["O", "B-PER", "I-PER"]
    cases = [
        (torch.tensor([0, 1, 2]), "symmetric", names, r"shape \(n, T\)"),
        (torch.tensor([[0, 5]]), "span-type", names, r"tag ids in \[0, 3\)"),
        (torch.tensor([[0, 1]]), "span-shift", names, "kind"),
        (torch.tensor([[0, 1]]), "span-missed", ["O", "B-PER"], "I-PER is missing"),
        (torch.tensor([[1, 2]]), "span-type", names, "at least 2 entity types"),
    ]
    for tags, kind, tag_names, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            inject_tag_noise(tags, 0.5, kind, tag_names, seed=0)
        assert "\n" not in str(info.value)
