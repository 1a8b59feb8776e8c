import random

import pytest
import torch

from crossent.data.tags import (
    check_sentences,
    check_tag_ids,
    entity_spans,
    parse_tag,
)

labeling = pytest.importorskip(
    "seqeval.metrics.sequence_labeling",
    reason="seqeval (the `test` extra) is the oracle of the chunk rules",
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-ORG", "I-ORG"]


def test_parse_tag():
    assert parse_tag("O") == ("O", "")
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("I-MISC-X") == ("I", "MISC-X")
    for bad in ("PER", "X-PER", "B-", "b-PER", ""):
        with pytest.raises(ValueError, match="PREFIX-TYPE") as info:
            parse_tag(bad)
        assert "\n" not in str(info.value) and repr(bad) in str(info.value)


def test_entity_spans_agree_with_seqeval_on_random_sequences():
    rng = random.Random(0)
    for _ in range(500):
        tags = [rng.choice(TAGS) for _ in range(rng.randint(1, 12))]
        expected = [tuple(e) for e in labeling.get_entities(tags)]
        assert entity_spans(tags) == expected, tags


def test_iob1_and_bio_spans():
    assert entity_spans(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [
        ("PER", 0, 1),
        ("PER", 2, 2),
        ("LOC", 4, 4),
    ]


def test_check_tag_ids_errors_are_one_line():
    tags = torch.tensor([[0, 1, -100], [2, 0, -100]])
    assert check_tag_ids("tags", tags, 3) is tags
    with pytest.raises(ValueError, match=r"shape \(n, T\)"):
        check_tag_ids("tags", torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError) as info:
        check_tag_ids("tags", torch.tensor([[0, 1], [7, 0]]), 3)
    assert "got 7 at sentence 1, token 0" in str(info.value) and "[0, 3)" in str(info.value)
    with pytest.raises(TypeError, match="integer tag ids"):
        check_tag_ids("tags", torch.zeros(2, 3), 3)


def test_check_sentences_refuses_an_empty_sentence():
    check_sentences("train tags", torch.tensor([[0, -100], [1, 2]]))
    with pytest.raises(ValueError) as info:
        check_sentences("train tags", torch.tensor([[0, -100], [-100, -100]]))
    assert str(info.value) == (
        "Expected every sentence of `train tags` to hold at least one token, but sentence 1 "
        "is empty (all -100)"
    )
