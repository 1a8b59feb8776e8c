"""Every engine term through the kernel template against the PyTorch engine (the oracle)."""

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import inspect

import torch

from crossent import terms, terms_distill
from crossent.kernels._spec import term_spec
from tests.kernels._util import assert_matches
from tests.kernels.conftest import use_layout

TERMS = [
    terms.CrossEntropyTerm(),
    terms.FocalTerm(2.0),
    terms.FocalTerm(0.5),
    terms.FLSD53FocalTerm(),
    terms.LqTerm(0.7),
    terms.LqTerm(0.7, truncate=0.05),
    terms.UnhingedTerm(),
    terms.MAETerm(),
    terms.ReverseCrossEntropyTerm(-4.0),
    terms.Poly1Term(1.0),
    terms.ConfidencePenaltyTerm(0.1),
    terms.BrierTerm(),
]
DISTILL_TERMS = [
    terms_distill.ForwardKLTerm(),
    terms_distill.ReverseKLTerm(),
    terms_distill.JensenShannonTerm(),
]
# Terms the template does not cover (they fall back to the engine; see test_kernel_dispatch).
NOT_IN_TEMPLATE = {"weighted_sum"}


def _case(kind, smoothing="uniform", n=4, k=37):
    """Logits, target and keyword arguments of one comparison."""
    z = 3 * torch.randn(n, k)
    weight = torch.rand(k) + 0.5
    if kind == "probs":
        target = torch.softmax(2 * torch.randn_like(z), dim=1)
        return z, target, {"weight": weight, "label_smoothing": 0.1}
    target = torch.randint(0, k, (n,))
    target[1] = -100
    eps = 0.0 if kind == "index" else 0.3
    return (
        z,
        target,
        {"weight": weight, "label_smoothing": eps, "smoothing": smoothing, "z_loss": 1e-3},
    )


@pytest.mark.parametrize("kind", ["index", "smoothed", "probs"])
@pytest.mark.parametrize("term", TERMS, ids=repr)
def test_term_matches_engine(term, kind, layout):
    # "smoothed" alternates between the two conventions across terms
    smoothing = "others" if TERMS.index(term) % 2 else "uniform"
    z, target, kw = _case(kind, smoothing)
    assert_matches(z, target, term, **kw)


@pytest.mark.parametrize("name", ["stream_fwd", "persistent", "stream_lane"])
@pytest.mark.parametrize("kind", ["index", "smoothed", "probs"])
@pytest.mark.parametrize("term", [TERMS[0], TERMS[1], TERMS[7]], ids=repr)
def test_other_layouts_match_engine(term, kind, name, monkeypatch):
    use_layout(monkeypatch, name)
    z, target, kw = _case(kind)
    assert_matches(z, target, term, **kw)


@pytest.mark.parametrize("term", DISTILL_TERMS, ids=repr)
def test_distillation_term_matches_engine(term, layout):
    z = 3 * torch.randn(4, 37)
    teacher = torch.log_softmax(2 * torch.randn_like(z), dim=1)
    if not isinstance(term, terms_distill.ReverseKLTerm):  # KL(p_s || 0) is infinite
        teacher[0, 3] = float("-inf")  # a class the teacher rules out
    assert_matches(z, teacher, term, weight=torch.rand(z.shape[1]) + 0.5, reduction="sum")


def test_distillation_of_equal_distributions_is_zero():
    z = 3 * torch.randn(4, 37)
    t = torch.log_softmax(z, dim=1)
    for term in DISTILL_TERMS:
        loss, _ = assert_matches(z, t, term)
        assert abs(float(loss)) < 1e-5


def test_every_engine_term_is_in_the_template():
    classes = set()
    for module in (terms, terms_distill):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, terms.Term) and cls is not terms.Term:
                classes.add(cls)
    tested = {type(t) for t in TERMS + DISTILL_TERMS}
    for cls in classes:
        if cls.name not in NOT_IN_TEMPLATE:
            assert cls in tested, f"{cls.__name__} is not tested against the kernel"
    for term in TERMS + DISTILL_TERMS:
        assert term_spec(term) is not None, term
