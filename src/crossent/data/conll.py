"""CoNLL-2003 named-entity recognition: a token-classification set read from column text.

Layout: ``<data_dir>/conll2003/`` with ``train.txt``, ``valid.txt`` and ``test.txt``, as in
``conll2003.zip`` (https://data.deepai.org/conll2003.zip, the copy TensorFlow Datasets
reads); files put straight into the data directory are found too. One token per line,
columns separated by spaces (word, part of speech, chunk, NER tag); the NER tag is the
last column, in BIO form (``B-PER``, ``I-PER``, ``O``, ...). Blank lines separate
sentences; ``-DOCSTART-`` lines mark documents and are skipped.

Encoding: the vocabulary comes from the training file only (``"<pad>"`` = 0,
``"<unk>"`` = 1, then words by decreasing count, ties alphabetical); words unseen in
training map to ``"<unk>"``. The tag set is the union over the three files, ``"O"`` first,
then by entity type with ``B-`` before ``I-``. Each split is padded to its longest sentence:
``x`` with 0, ``y`` with -100 (PyTorch's ``ignore_index``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from crossent.data.base import (
    Dataset,
    Request,
    Split,
    check_bool,
    check_int,
    find_folder,
    missing_file,
)

CONLL_URL = "https://data.deepai.org/conll2003.zip"
CONLL_FILES = ("train.txt", "valid.txt", "test.txt")
PAD, UNK = "<pad>", "<unk>"
IGNORE_INDEX = -100

Sentence = tuple[list[str], list[str]]


def read_conll(path: Path) -> list[Sentence]:
    r"""Read CoNLL column text into ``(words, tags)`` per sentence (tag = last column).

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
                raise ValueError(
                    f"Expected a word and a tag on line {number} of {path}, "
                    f"but got {line.strip()!r}"
                )
            words.append(columns[0])
            tags.append(columns[-1])
    if words:
        sentences.append((words, tags))
    return sentences


def _tag_key(tag: str) -> tuple[int, str, str]:
    prefix, _, entity = tag.partition("-")
    return (0, "", "") if tag == "O" else (1, entity or prefix, prefix if entity else "")


def _vocabulary(sentences: list[Sentence], min_freq: int) -> tuple[str, ...]:
    counts = Counter(word for words, _ in sentences for word in words)
    kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return (PAD, UNK, *kept)


def _encode(
    sentences: list[Sentence], words: dict[str, int], tags: dict[str, int], max_length: int | None
) -> Split:
    longest = max((len(w) for w, _ in sentences), default=0)
    width = longest if max_length is None else min(longest, max_length)
    x = torch.zeros(len(sentences), width, dtype=torch.int64)
    y = torch.full((len(sentences), width), IGNORE_INDEX, dtype=torch.int64)
    for row, (sentence, labels) in enumerate(sentences):
        n = min(len(sentence), width)
        x[row, :n] = torch.tensor([words.get(w, 1) for w in sentence[:n]], dtype=torch.int64)
        y[row, :n] = torch.tensor([tags[t] for t in labels[:n]], dtype=torch.int64)
    return Split(x, y)


def load_conll2003(request: Request) -> Dataset:
    """CoNLL-2003 NER (Tjong Kim Sang and De Meulder, 2003) as token ids and tag ids.

    The official train / valid / test files are the three splits (``seed``,
    ``validation_fraction`` and ``test_fraction`` do not change them).

    Options: ``lowercase`` (default ``False``), ``min_freq`` (default 1: every training
    word gets an id), ``max_length`` (default ``None``: no truncation).

    References:
        Tjong Kim Sang and De Meulder, `Introduction to the CoNLL-2003 Shared Task:
        Language-Independent Named Entity Recognition <https://aclanthology.org/W03-0419/>`_,
        2003.
    """
    opts = request.take_options({"lowercase": False, "min_freq": 1, "max_length": None})
    lowercase = check_bool("lowercase", opts["lowercase"])
    min_freq = check_int("min_freq", opts["min_freq"], 1)
    max_length = (
        None if opts["max_length"] is None else check_int("max_length", opts["max_length"], 1)
    )
    folder = find_folder(request.data_dir, "conll2003", CONLL_FILES)
    for name in CONLL_FILES:
        if not (folder / name).is_file():
            raise missing_file(
                folder / name,
                f"Download the CoNLL-2003 English NER data in column format ({CONLL_URL}; "
                f"task page https://www.clips.uantwerpen.be/conll2003/ner/) and put "
                f"train.txt, valid.txt and test.txt in {folder}/.",
            )
    splits = [read_conll(folder / name) for name in CONLL_FILES]
    if lowercase:
        splits = [[([w.lower() for w in ws], ts) for ws, ts in s] for s in splits]
    vocabulary = _vocabulary(splits[0], min_freq)
    word_ids = {w: i for i, w in enumerate(vocabulary)}
    names = tuple(sorted({t for s in splits for _, ts in s for t in ts}, key=_tag_key))
    tag_ids = {t: i for i, t in enumerate(names)}
    train, validation, test = (_encode(s, word_ids, tag_ids, max_length) for s in splits)
    return Dataset(request.name, train, validation, test, len(names), names, "tokens", vocabulary)
