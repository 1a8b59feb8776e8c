"""CoNLL-2003 named-entity recognition and any CoNLL column file: token ids and tag ids.

``conll2003`` layout: ``<data_dir>/conll2003/`` with ``train.txt``, ``valid.txt`` and
``test.txt``, as in ``conll2003.zip`` (https://data.deepai.org/conll2003.zip, the copy
TensorFlow Datasets reads); files put straight into the data directory are found too.
``conll:PATH`` reads your own files in the same format: ``PATH`` is a folder holding
``train.txt``, ``valid.txt`` (or ``dev.txt``) and ``test.txt``, or one file whose sentences
are split by the seed (``test_fraction`` to test, ``validation_fraction`` to validation).

Format: one token per line, columns separated by white space, the word first and the tag
last (CoNLL-2003: word, part of speech, chunk, NER tag); tags are ``O`` or ``PREFIX-TYPE``
with ``PREFIX`` in B, I, E, S (BIO, IOB1, IOB2, IOBES). Blank lines separate sentences;
``-DOCSTART-`` lines mark documents and are skipped. A line with a single column or a tag of
another form is an error naming the file, the line number and the line.

Encoding: the vocabulary comes from the training split only (``"<pad>"`` = 0,
``"<unk>"`` = 1, then words by decreasing count, ties alphabetical); words unseen in
training map to ``"<unk>"``. The tag set is the union over the three splits, ``"O"`` first,
then by entity type with ``B-`` before ``I-``. Each split is padded to its longest sentence:
``x`` with 0, ``y`` with -100 (PyTorch's ``ignore_index``). With the option ``max_length``
longer sentences are cut to their first ``max_length`` tokens, with a warning that counts
them.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from crossent.core.checks import check_choice
from crossent.data.base import (
    Dataset,
    Request,
    Split,
    check_bool,
    check_int,
    find_folder,
    missing_file,
)
from crossent.data.tags import IGNORE_INDEX, parse_tag

CONLL_URL = "https://data.deepai.org/conll2003.zip"
CONLL_FILES = ("train.txt", "valid.txt", "test.txt")
PAD, UNK = "<pad>", "<unk>"

Sentence = tuple[list[str], list[str]]


def _bad_line(path: Path, number: int, line: str, expected: str) -> ValueError:
    return ValueError(f"Expected {expected} on line {number} of {path}, but got {line.strip()!r}")


def read_conll(path: Path) -> list[Sentence]:
    r"""Read CoNLL column text into ``(words, tags)`` per sentence (tag = last column).

    Raises:
        ValueError: a line with one column, or a tag that is not ``O`` / ``PREFIX-TYPE``
            (the file, the line number and the line in the message).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
        >>> _ = p.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
        >>> read_conll(p)
        [(['EU', 'rejects'], ['B-ORG', 'O'])]
    """
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            if len(columns) < 2:
                raise _bad_line(path, number, line, "a word and a tag")
            try:
                parse_tag(columns[-1])
            except ValueError:
                raise _bad_line(
                    path, number, line, "a tag O or PREFIX-TYPE (B-PER, I-LOC, ...) last"
                ) from None
            words.append(columns[0])
            tags.append(columns[-1])
    if words:
        sentences.append((words, tags))
    return sentences


def tag_order(tags: Iterable[str]) -> tuple[str, ...]:
    """The tag set in crossent's order: ``"O"`` first, then by type, ``B-`` before ``I-``.

    Example:
        >>> tag_order(["I-PER", "O", "B-PER", "B-LOC"])
        ('O', 'B-LOC', 'B-PER', 'I-PER')
    """
    return tuple(sorted({"O", *tags}, key=_tag_key))


def _tag_key(tag: str) -> tuple[int, str, str]:
    prefix, kind = parse_tag(tag)
    return (0, "", "") if tag == "O" else (1, kind, prefix)


def build_vocabulary(sentences: list[Sentence], min_freq: int) -> tuple[str, ...]:
    """``("<pad>", "<unk>", words...)``: words seen ``>= min_freq`` times, most frequent first."""
    counts = Counter(word for words, _ in sentences for word in words)
    kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return (PAD, UNK, *kept)


def encode_sentences(
    sentences: list[Sentence], words: dict[str, int], tags: dict[str, int], max_length: int | None
) -> Split:
    """Token ids ``(n, T)`` (0 pads, unknown words are 1) and tag ids (-100 pads).

    ``T`` is the longest sentence, or ``max_length`` when given and shorter: longer
    sentences are cut, with a ``UserWarning`` counting them.
    """
    longest = max((len(w) for w, _ in sentences), default=0)
    width = longest if max_length is None else min(longest, max_length)
    cut = sum(len(w) > width for w, _ in sentences)
    if cut:
        warnings.warn(
            f"{cut} of {len(sentences)} sentences are longer than max_length={width} tokens "
            "and were cut to their first max_length tokens",
            UserWarning,
            stacklevel=3,
        )
    x = torch.zeros(len(sentences), width, dtype=torch.int64)
    y = torch.full((len(sentences), width), IGNORE_INDEX, dtype=torch.int64)
    for row, (sentence, labels) in enumerate(sentences):
        n = min(len(sentence), width)
        x[row, :n] = torch.tensor([words.get(w, 1) for w in sentence[:n]], dtype=torch.int64)
        y[row, :n] = torch.tensor([tags[t] for t in labels[:n]], dtype=torch.int64)
    return Split(x, y)


VOCABULARY_SOURCES = ("train", "all")


def _options(request: Request) -> tuple[bool, int, int | None, str]:
    defaults = {"lowercase": False, "min_freq": 1, "max_length": None, "vocabulary": "train"}
    opts = request.take_options(defaults)
    lowercase = check_bool("lowercase", opts["lowercase"])
    min_freq = check_int("min_freq", opts["min_freq"], 1)
    max_length = (
        None if opts["max_length"] is None else check_int("max_length", opts["max_length"], 1)
    )
    check_choice("vocabulary", opts["vocabulary"], VOCABULARY_SOURCES)
    return lowercase, min_freq, max_length, str(opts["vocabulary"])


def vocabulary_source(splits: list[list[Sentence]], source: str) -> list[Sentence]:
    """The sentences the vocabulary is counted on: the training split, or ``"all"`` splits.

    ``"all"`` reads only the words of validation and test (never their tags); it is for a
    pretrained tokenizer, which should see the real words rather than ``"<unk>"``.
    """
    return splits[0] if source == "train" else [s for split in splits for s in split]


def _dataset(request: Request, splits: list[list[Sentence]]) -> Dataset:
    """Encode train / validation / test sentences as a Dataset (vocabulary: see options)."""
    lowercase, min_freq, max_length, source = _options(request)
    for name, sentences in zip(("train", "validation", "test"), splits, strict=True):
        if not sentences:
            raise ValueError(f"Expected sentences in the {name} split of {request.name}, got none")
    if lowercase:
        splits = [[([w.lower() for w in ws], ts) for ws, ts in s] for s in splits]
    vocabulary = build_vocabulary(vocabulary_source(splits, source), min_freq)
    word_ids = {w: i for i, w in enumerate(vocabulary)}
    names = tag_order(t for s in splits for _, ts in s for t in ts)
    tag_ids = {t: i for i, t in enumerate(names)}
    train, validation, test = (encode_sentences(s, word_ids, tag_ids, max_length) for s in splits)
    return Dataset(request.name, train, validation, test, len(names), names, "tokens", vocabulary)


def load_conll2003(request: Request) -> Dataset:
    """CoNLL-2003 NER (Tjong Kim Sang and De Meulder, 2003) as token ids and tag ids.

    The official train / valid / test files are the three splits (``seed``,
    ``validation_fraction`` and ``test_fraction`` do not change them).

    Options: ``lowercase`` (default ``False``), ``min_freq`` (default 1: every training
    word gets an id), ``max_length`` (default ``None``: no truncation), ``vocabulary``
    (``"train"``, the default, or ``"all"``: see :func:`vocabulary_source`).

    References:
        Tjong Kim Sang and De Meulder, `Introduction to the CoNLL-2003 Shared Task:
        Language-Independent Named Entity Recognition <https://aclanthology.org/W03-0419/>`_,
        2003.
    """
    _options(request)  # unknown or bad options fail before any file is read
    folder = find_folder(request.data_dir, "conll2003", CONLL_FILES)
    for name in CONLL_FILES:
        if not (folder / name).is_file():
            raise missing_file(
                folder / name,
                f"Download the CoNLL-2003 English NER data in column format ({CONLL_URL}; "
                f"task page https://www.clips.uantwerpen.be/conll2003/ner/) and put "
                f"train.txt, valid.txt and test.txt in {folder}/.",
            )
    return _dataset(request, [read_conll(folder / name) for name in CONLL_FILES])


def load_conll_path(request: Request, path: Path) -> Dataset:
    """``conll:PATH``: your CoNLL column files (a folder of three, or one file; module doc).

    A folder holds ``train.txt``, ``valid.txt`` (or ``dev.txt``) and ``test.txt``; one file
    is split by the seed.

    Options as :func:`load_conll2003`.
    """
    _options(request)
    if path.is_dir():
        valid = "valid.txt" if (path / "valid.txt").is_file() else "dev.txt"
        files = [path / "train.txt", path / valid, path / "test.txt"]
        for file in files:
            if not file.is_file():
                raise missing_file(file, "conll:FOLDER needs train.txt, valid.txt, test.txt.")
        return _dataset(request, [read_conll(f) for f in files])
    if not path.is_file():
        raise missing_file(path, "conll:PATH takes a CoNLL column file or a folder of them.")
    sentences = read_conll(path)
    order = list(range(len(sentences)))
    random.Random(request.seed).shuffle(order)
    n_test = round(request.test_fraction * len(sentences))
    n_val = round(request.validation_fraction * len(sentences))
    picks = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
    return _dataset(request, [[sentences[i] for i in p] for p in picks])
