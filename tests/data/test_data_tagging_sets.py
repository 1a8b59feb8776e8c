import warnings

import pytest
import torch

from crossent.data import load_dataset
from crossent.data.synthetic_ner import AMBIGUOUS, generate_sentences
from crossent.data.tags import entity_spans

TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_synthetic_ner_shapes_tags_and_share_of_o():
    ds = load_dataset("synthetic-ner", seed=0)
    assert ds.kind == "tokens" and ds.num_classes == 9
    assert ds.class_names == (
        "O",
        "B-LOC",
        "I-LOC",
        "B-MISC",
        "I-MISC",
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
    )
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1950, 450, 600)
    for split in (ds.train, ds.validation, ds.test):
        assert split.x.dtype == torch.int64 and split.y.shape == split.x.shape
        assert torch.equal(split.x == 0, split.y == -100)  # padding in both, nowhere else
    tags = ds.train.y[ds.train.y != -100]
    assert 0.75 < float((tags == 0).double().mean()) < 0.88  # CoNLL-2003: 0.83
    # the vocabulary is the training split's: some test words are unknown (id 1)
    assert int((ds.test.x == 1).sum()) > 0 and int((ds.train.x == 1).sum()) == 0


def test_synthetic_ner_has_multi_token_and_context_dependent_entities():
    sentences = generate_sentences(2000, seed=0)
    spans = [(s, e) for words, tags in sentences for s in [words] for e in entity_spans(tags)]
    assert {kind for _, (kind, _, _) in spans} == {"PER", "LOC", "ORG", "MISC"}
    assert sum(last > first for _, (_, first, last) in spans) > 200
    types_of = {}
    for words, (kind, first, last) in spans:
        if first == last and words[first] in AMBIGUOUS:
            types_of.setdefault(words[first], set()).add(kind)
    assert sum(len(t) >= 2 for t in types_of.values()) >= 5  # the same word, different types


def test_synthetic_ner_is_seeded():
    a = load_dataset("synthetic-ner", seed=0, sentences=200)
    b = load_dataset("synthetic-ner", seed=0, sentences=200)
    c = load_dataset("synthetic-ner", seed=1, sentences=200)
    assert torch.equal(a.train.y, b.train.y) and a.vocabulary == b.vocabulary
    assert not torch.equal(a.test.x[:, :5], c.test.x[:, :5])  # another split
    d = load_dataset("synthetic-ner", seed=0, sentences=200, corpus_seed=5)
    assert a.vocabulary != d.vocabulary  # another corpus
    with pytest.raises(ValueError, match="sentences"):
        load_dataset("synthetic-ner", sentences=3)


def test_conll_path_folder_and_single_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("train.txt", "dev.txt", "test.txt"):
        (folder / name).write_text(TRAIN, encoding="utf-8")
    ds = load_dataset(f"conll:{folder}")
    assert ds.kind == "tokens" and ds.train.y.shape == (2, 5)
    assert ds.class_names == ("O", "B-MISC", "B-ORG", "B-PER", "I-PER")
    one = tmp_path / "all.txt"
    one.write_text("\n".join([TRAIN] * 10), encoding="utf-8")
    ds = load_dataset(f"conll:{one}", seed=0, validation_fraction=0.2, test_fraction=0.2)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (12, 4, 4)
    everything = load_dataset(f"conll:{one}", seed=0, vocabulary="all")
    assert set(everything.vocabulary) >= set(ds.vocabulary)


def test_conll_bad_lines_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_dataset(f"conll:{path}")
    assert str(info.value) == (f"Expected a word and a tag on line 2 of {path}, but got 'rejects'")
    path.write_text("EU NNP B-NP B-ORG\n\nrejects VBZ B-VP ORG\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_dataset(f"conll:{path}")
    assert "line 3 of" in str(info.value) and "'rejects VBZ B-VP ORG'" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="conll:PATH"):
        load_dataset(f"conll:{tmp_path / 'missing.txt'}")


def test_conll_max_length_cuts_with_a_warning(tmp_path):
    path = tmp_path / "all.txt"
    path.write_text("\n".join([TRAIN] * 10), encoding="utf-8")
    with pytest.warns(UserWarning, match=r"sentences are longer than max_length=3"):
        ds = load_dataset(f"conll:{path}", max_length=3)
    assert ds.train.x.shape[1] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(f"conll:{path}", max_length=5)
