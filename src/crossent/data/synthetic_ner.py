"""A synthetic named-entity corpus, generated offline and seeded: ``synthetic-ner``.

Sentences are drawn from templates in the style of Reuters news (the text of CoNLL-2003)
whose slots are filled from word lists, and tagged in BIO / IOB2 over four entity types
(``PER``, ``LOC``, ``ORG``, ``MISC``, as CoNLL-2003). What makes it a tagging task rather
than a word lookup:

* **multi-token entities**: ``Anna Kovacs``, ``New Varlen``, ``Dravo Holdings Corp``,
  ``University of Talmor`` (a location word inside an organisation);
* **unseen names**: surnames, towns and company stems are built from syllables, so the test
  split holds names the training split never saw (``<unk>``) and only the context tells their
  type, as in CoNLL-2003;
* **ambiguous words** (``Jordan``, ``Washington``, ``Chelsea``, ``Ford``, ...) that are a
  person, a place or a team depending on the sentence; in a few templates the context does not
  decide either (``Jordan won on Sunday .``: a player or a club), so the best possible token
  accuracy is below 100%;
* about 80% of the tokens are ``O`` (CoNLL-2003: 83%), with sentences without entities.

The corpus is fixed by the option ``corpus_seed`` (default 0); the split seed only decides
which sentences go to train / validation / test (``validation_fraction``,
``test_fraction``). The vocabulary comes from the training split only.
"""

from __future__ import annotations

import random

from crossent.core.checks import check_choice
from crossent.data.base import Dataset, Request, check_int
from crossent.data.conll import (
    VOCABULARY_SOURCES,
    Sentence,
    build_vocabulary,
    encode_sentences,
    tag_order,
    vocabulary_source,
)

TYPES = ("PER", "LOC", "ORG", "MISC")

_FIRST = (
    "Anna John Maria Peter David Elena Thomas Sara Michael Laura Paul Ivan Nina Carlos Yuki "
    "Omar Fatima Hans Ingrid Pierre Sofia Marco Lucia Ahmed Olga Robert Chen Aisha Jan Eva"
).split()
_SYLLABLES = (
    "ka ro mi dan vel tor sen bar lin mo ra ven dal kor pel su na gri fen hol mar tes ula "
    "bri zan cor lev"
).split()
_TOWN_ENDS = ("burg", "ton", "ville", "stad", "ford", "mouth", "polis", "grad", "heim", "port")
_COUNTRIES = (
    "Germany France Italy Spain Brazil Japan China Egypt Kenya Canada Mexico Russia Poland "
    "Turkey Sweden Norway Chile Peru India Greece"
).split()
_NATIONALITIES = (
    "German French Italian Spanish Brazilian Japanese Chinese Egyptian Kenyan Canadian "
    "Mexican Russian Polish Turkish Swedish"
).split()
_EVENTS = ("World Cup", "Olympic Games", "Davis Cup", "Tour de France", "Grand Prix", "Euro")
_ORG_ENDS = ("Corp", "Bank", "Holdings", "Group", "Airlines", "Motors", "Telecom", "Inc")
_CLUB_ENDS = ("United", "City", "Rovers", "FC")
_INSTITUTIONS = ("University of", "Bank of", "Council of")
#: Words that are a person, a place or an organisation depending on the sentence.
AMBIGUOUS = {
    "Jordan": ("PER", "LOC", "ORG"),
    "Washington": ("PER", "LOC", "ORG"),
    "Chelsea": ("PER", "LOC", "ORG"),
    "Lincoln": ("PER", "LOC", "ORG"),
    "Austin": ("PER", "LOC"),
    "Victoria": ("PER", "LOC"),
    "Florence": ("PER", "LOC"),
    "Madison": ("PER", "LOC"),
    "Ford": ("PER", "ORG"),
    "Milan": ("LOC", "ORG"),
    "Georgia": ("PER", "LOC"),
}
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTHS = "January March May July September November".split()
_NOUNS = "deal plan talks budget market report election contract season".split()
_VERBS = "approve reject delay review sign discuss".split()

#: Templates: {PER}, {LOC}, {ORG}, {MISC}: an entity of that type; {AMB}: an ambiguous word
#: whose type the template does not decide; other {...}: filler words (tagged O).
TEMPLATES = (
    "{PER} said on {DAY} that the {NOUN} would go ahead .",
    "Mr. {SURNAME} told reporters in {LOC} that the {NOUN} was going well .",
    "{PER} , a spokesman for {ORG} , said the {NOUN} was done .",
    "{PER} scored twice as {ORG} beat {ORG} {SCORE} on {DAY} .",
    "{MISC} striker {PER} was injured in the first half .",
    "the {MISC} minister , {PER} , arrived in {LOC} on {DAY} .",
    "police in {LOC} said {NUM} people were hurt in the storm .",
    "the talks will be held in {LOC} next {DAY} , officials said .",
    "{LOC} {NUM} {MONTH} - the {NOUN} was delayed again .",
    "prices rose in {LOC} and {LOC} on {DAY} , traders said .",
    "shares of {ORG} rose {NUM} percent on {DAY} .",
    "{ORG} said its {NOUN} profit fell to {NUM} million dollars .",
    "the board of {ORG} voted to {VERB} the {NOUN} .",
    "the {MISC} government said it would {VERB} the {NOUN} .",
    "{MISC} fans celebrated after the {EVENT} final in {LOC} .",
    "{AMB} won the match on {DAY} .",
    "{AMB} is expected to {VERB} the {NOUN} .",
    "the market closed higher on {DAY} after the {NOUN} .",
    "analysts said the outlook for the {NOUN} remained uncertain .",
    "{NUM} people were killed and {NUM} injured on {DAY} .",
    "it was not clear when the {NOUN} would be signed .",
)
#: The share of PER / LOC / ORG slots filled with an ambiguous word (context decides its type).
_AMBIGUOUS_SHARE = 0.15


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _person(rng: random.Random) -> list[str]:
    form = rng.random()
    if form < 0.6:
        return [rng.choice(_FIRST), _name(rng, rng.choice((2, 3)))]
    return [_name(rng, 2)] if form < 0.8 else [rng.choice(_FIRST)]


def _place(rng: random.Random) -> list[str]:
    form = rng.random()
    if form < 0.4:
        return [rng.choice(_COUNTRIES)]
    if form < 0.8:
        return [_name(rng, 1) + rng.choice(_TOWN_ENDS)]
    return [rng.choice(("New", "San", "Port")), _name(rng, 2)]


def _organisation(rng: random.Random) -> list[str]:
    form = rng.random()
    if form < 0.5:
        return [_name(rng, 2), rng.choice(_ORG_ENDS)]
    if form < 0.8:
        return [_name(rng, 1) + rng.choice(_TOWN_ENDS), rng.choice(_CLUB_ENDS)]
    return [*rng.choice(_INSTITUTIONS).split(), _name(rng, 1) + rng.choice(_TOWN_ENDS)]


def _miscellaneous(rng: random.Random) -> list[str]:
    if rng.random() < 0.7:
        return [rng.choice(_NATIONALITIES)]
    return rng.choice(_EVENTS).split()


_MAKERS = {"PER": _person, "LOC": _place, "ORG": _organisation, "MISC": _miscellaneous}


def _entity(rng: random.Random, kind: str) -> list[str]:
    """The words of one entity of ``kind`` (an ambiguous word with probability 0.15)."""
    if kind != "MISC" and rng.random() < _AMBIGUOUS_SHARE:
        word = rng.choice([w for w, types in AMBIGUOUS.items() if kind in types])
        if kind == "PER" and rng.random() < 0.5:
            return [rng.choice(_FIRST), word]
        return [word]
    return _MAKERS[kind](rng)


def _filler(rng: random.Random, slot: str) -> list[str]:
    options = {
        "DAY": _DAYS,
        "MONTH": _MONTHS,
        "NOUN": _NOUNS,
        "VERB": _VERBS,
        "NUM": [str(n) for n in range(2, 60)],
        "SCORE": ["1-0", "2-1", "3-1", "2-0", "0-0"],
        "SURNAME": None,
    }[slot]
    return [_name(rng, 2)] if options is None else [rng.choice(options)]


def _sentence(rng: random.Random, template: str) -> Sentence:
    words: list[str] = []
    tags: list[str] = []
    for token in template.split():
        if not (token.startswith("{") and token.endswith("}")):
            words.append(token)
            tags.append("O")
            continue
        slot = token[1:-1]
        if slot == "SURNAME":  # "Mr. Kovacs": the surname is the person, the title is O
            parts, kind = _filler(rng, slot), "PER"
        elif slot == "AMB":
            word = rng.choice(list(AMBIGUOUS))
            parts, kind = [word], rng.choice(AMBIGUOUS[word])
        elif slot == "EVENT":
            parts, kind = rng.choice(_EVENTS).split(), "MISC"
        elif slot in TYPES:
            parts, kind = _entity(rng, slot), slot
        else:
            parts, kind = _filler(rng, slot), ""
        words += parts
        tags += [f"{'B' if i == 0 else 'I'}-{kind}" if kind else "O" for i in range(len(parts))]
    return words, tags


def generate_sentences(count: int, seed: int) -> list[Sentence]:
    """``count`` tagged sentences of the synthetic corpus, drawn from ``random.Random(seed)``.

    Example:
        >>> words, tags = generate_sentences(1, seed=0)[0]
        >>> len(words) == len(tags)
        True
    """
    rng = random.Random(seed)
    return [_sentence(rng, rng.choice(TEMPLATES)) for _ in range(count)]


def load_synthetic_ner(request: Request) -> Dataset:
    """The synthetic NER corpus as ``(n, T)`` token ids and BIO tag ids (see the module doc).

    Options: ``sentences`` (default 3000, all splits together), ``corpus_seed`` (default 0),
    ``vocabulary`` (``"train"``, the default, or ``"all"``, as ``conll2003``).
    The split is a seeded permutation of the sentences: ``test_fraction`` of them to test,
    ``validation_fraction`` to validation, the rest to train.
    """
    opts = request.take_options({"sentences": 3000, "corpus_seed": 0, "vocabulary": "train"})
    check_choice("vocabulary", opts["vocabulary"], VOCABULARY_SOURCES)
    count = check_int("sentences", opts["sentences"], 10)
    corpus = generate_sentences(count, check_int("corpus_seed", opts["corpus_seed"], 0))
    order = list(range(count))
    random.Random(request.seed).shuffle(order)
    n_test = round(request.test_fraction * count)
    n_val = round(request.validation_fraction * count)
    test = [corpus[i] for i in order[:n_test]]
    validation = [corpus[i] for i in order[n_test : n_test + n_val]]
    train = [corpus[i] for i in order[n_test + n_val :]]
    vocabulary = build_vocabulary(
        vocabulary_source([train, validation, test], opts["vocabulary"]), 1
    )
    word_ids = {w: i for i, w in enumerate(vocabulary)}
    names = tag_order(f"{p}-{t}" for t in TYPES for p in "BI")
    tag_ids = {t: i for i, t in enumerate(names)}
    splits = (encode_sentences(s, word_ids, tag_ids, None) for s in (train, validation, test))
    return Dataset(request.name, *splits, len(names), names, "tokens", vocabulary)
