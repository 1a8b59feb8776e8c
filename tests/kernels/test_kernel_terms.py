"""Every engine term through the kernel template against the PyTorch engine (the oracle)."""

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import inspect

import torch

from crossent import terms
from crossent.kernels._spec import term_spec
from tests.kernels._util import assert_matches, run_engine, run_kernel
from tests.kernels.conftest import LAYOUTS, use_layout

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
    # symmetric CE (Wang et al. 2019): alpha CE + beta RCE in one kernel block
    terms.WeightedSumTerm(
        [(0.1, terms.CrossEntropyTerm()), (1.0, terms.ReverseCrossEntropyTerm(-4.0))]
    ),
]
DISTILL_TERMS = [
    terms.ForwardKLTerm(),
    terms.ReverseKLTerm(),
    terms.JensenShannonTerm(),
    # mixed KL: mix forward + (1 - mix) reverse
    terms.WeightedSumTerm([(0.3, terms.ForwardKLTerm()), (0.7, terms.ReverseKLTerm())]),
]


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
    parts = [t for _, t in term.parts] if isinstance(term, terms.WeightedSumTerm) else [term]
    if not any(isinstance(t, terms.ReverseKLTerm) for t in parts):  # KL(p_s||0) = inf
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
    for module in (terms,):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            # a term declaring no kernel block (kernel = None) runs on the engine only
            if issubclass(cls, terms.Term) and cls is not terms.Term and cls.kernel is not None:
                classes.add(cls)
    tested = {type(t) for t in TERMS + DISTILL_TERMS}
    for cls in classes:
        assert cls in tested, f"{cls.__name__} is not tested against the kernel"
    for term in TERMS + DISTILL_TERMS:
        assert term_spec(term) is not None, term


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("kind", ["index", "smoothed"])
@pytest.mark.parametrize("term", TERMS + DISTILL_TERMS, ids=repr)
def test_index_targets_match_engine_on_every_layout(term, kind, name, monkeypatch):
    # terms linear in s (CE, forward KL) gather their one-hot sums in the statistics pass
    use_layout(monkeypatch, name)
    z, target, kw = _case(kind)
    assert_matches(z, target, term, **kw)


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("k", [1, 3, 100])
def test_forward_kl_with_class_indices_for_any_k(k, name, monkeypatch):
    use_layout(monkeypatch, name)
    z, target = 3 * torch.randn(5, k), torch.randint(0, k, (5,))
    assert_matches(z, target, DISTILL_TERMS[0], reduction="none")
    assert_matches(z, target, DISTILL_TERMS[0], label_smoothing=0.2, weight=torch.rand(k) + 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("term", TERMS + DISTILL_TERMS, ids=repr)
def test_tied_extreme_logits_keep_float32_precision(term, kind, dtype, layout):
    # s = (z - m) - log d as log_softmax forms it: z - lse with lse ~ 1e4 loses ~10 bits.
    # Oracle: the engine on the same logits in float64 (its float32 full path forms z - lse).
    z = torch.tensor([[1e4, 1e4, -1e4], [-1e4, 1e4, 1e4]], dtype=dtype)
    target = torch.tensor([0, 2])
    if kind == "probs":
        target = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
        if term in DISTILL_TERMS:
            target = target.log()
    loss, grad = run_kernel(z, target, term, reduction="none")
    ref_target = target.double() if kind == "probs" else target
    ref_loss, ref_grad = run_engine(z.double(), ref_target, term, reduction="none")
    torch.testing.assert_close(loss, ref_loss.float())
    torch.testing.assert_close(grad, ref_grad.to(dtype))
