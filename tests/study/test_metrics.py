import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from crossent.study import metrics as m


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 5])
def test_metrics_match_scikit_learn(seed, k):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (200,), generator=g)
    pred = torch.where(
        torch.rand(200, generator=g) < 0.6, target, torch.randint(0, k, (200,), generator=g)
    )
    labels = list(range(k))
    assert (
        m.confusion_matrix(pred, target, k).tolist()
        == sk.confusion_matrix(target, pred, labels=labels).tolist()
    )
    assert m.accuracy(pred, target) == pytest.approx(sk.accuracy_score(target, pred))
    assert m.macro_f1(pred, target, k) == pytest.approx(
        sk.f1_score(target, pred, average="macro", labels=labels, zero_division=0)
    )
    assert m.per_class_recall(pred, target, k) == pytest.approx(
        list(sk.recall_score(target, pred, average=None, labels=labels, zero_division=0))
    )


def test_absent_class_counts_as_zero():
    pred = torch.tensor([0, 0, 1])
    target = torch.tensor([0, 1, 1])
    # class 2 never occurs: F1 0, recall 0, and it still counts in the macro average
    assert m.per_class_recall(pred, target, 3) == [1.0, 0.5, 0.0]
    expected = sk.f1_score(target, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert m.macro_f1(pred, target, 3) == pytest.approx(expected)


def test_precision_recall_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (100,), generator=g)
    scores = (target + torch.randn(100, generator=g)).sigmoid()
    pr = m.precision_recall(scores, target)
    precision, recall, _ = sk.precision_recall_curve(target.numpy(), scores.double().numpy())
    np.testing.assert_allclose(pr["precision"], precision)
    np.testing.assert_allclose(pr["recall"], recall)
    assert pr["average_precision"] == pytest.approx(sk.average_precision_score(target, scores))
