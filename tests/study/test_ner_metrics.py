import pytest
import torch

from crossent.study.ner_metrics import entity_scores, token_accuracy

oracle = pytest.importorskip("seqeval.metrics", reason="seqeval (the `test` extra) is the oracle")

NAMES = ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")


def _strings(tags, gold):
    return [
        [NAMES[t] for t, g in zip(row, grow, strict=True) if g != -100]
        for row, grow in zip(tags.tolist(), gold.tolist(), strict=True)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_equal_to_seqeval_on_the_same_tags(seed):
    g = torch.Generator().manual_seed(seed)
    gold = torch.randint(0, len(NAMES), (40, 12), generator=g)
    gold[torch.rand(40, 12, generator=g) < 0.5] = 0  # mostly O, as in NER data
    lengths = torch.randint(1, 13, (40,), generator=g)
    gold[torch.arange(12).expand(40, 12) >= lengths[:, None]] = -100
    pred = gold.clone()
    noise = torch.rand(40, 12, generator=g) < 0.3
    pred[noise] = torch.randint(0, len(NAMES), (int(noise.sum()),), generator=g)
    pred[gold == -100] = 0
    ours = entity_scores(pred, gold, NAMES)
    y_true, y_pred = _strings(gold, gold), _strings(pred, gold)
    assert ours["precision"] == pytest.approx(oracle.precision_score(y_true, y_pred), abs=1e-12)
    assert ours["recall"] == pytest.approx(oracle.recall_score(y_true, y_pred), abs=1e-12)
    assert ours["f1"] == pytest.approx(oracle.f1_score(y_true, y_pred), abs=1e-12)
    report = oracle.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for kind, scores in ours["per_type"].items():
        if kind in report:
            theirs = report[kind]
            assert scores["precision"] == pytest.approx(theirs["precision"], abs=1e-12)
            assert scores["recall"] == pytest.approx(theirs["recall"], abs=1e-12)
            assert scores["f1"] == pytest.approx(theirs["f1-score"], abs=1e-12)
            assert scores["support"] == theirs["support"]
        else:  # seqeval lists only types that occur; ours has every type, all zero
            assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert ours["support"] == report["micro avg"]["support"]


def test_no_entities_and_token_accuracy():
    gold = torch.tensor([[0, 0, -100]])
    scores = entity_scores(gold.clamp(min=0), gold, NAMES)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert token_accuracy(torch.tensor([[0, 1, 5]]), gold) == 0.5
    with pytest.raises(ValueError, match="shape of `gold`"):
        entity_scores(torch.zeros(1, 2, dtype=torch.long), gold, NAMES)
