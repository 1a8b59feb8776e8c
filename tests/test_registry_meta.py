"""Meta-tests that walk the registry: a loss left out anywhere fails here, not silently.

Every registry name has a function and a module exported where users import them, an entry in
docs/losses.md and a float64 reference (values and gradients); every loss built on one engine
term takes the fused engine path of ``linear_loss`` and either has a block in the GPU kernel
template or runs on the engine only by its term's own declaration.
"""

import inspect
import pathlib
import re

import pytest
import torch

import crossent
import crossent.terms
from crossent import registry
from crossent.core.term import KernelCode, Term
from crossent.kernels import _spec
from crossent.linear import api as linear_api
from crossent.linear.fused import FusedProblem
from crossent.nn import TermModule
from tests.reference_registry import REFERENCES, inputs

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "losses.md").read_text()
TEMPLATE = (ROOT / "src" / "crossent" / "kernels" / "_terms_jit.py").read_text()
NAMES = registry.available_losses()
TERM_LOSSES = [n for n in NAMES if issubclass(registry.loss_class(n), TermModule)]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_has_its_function_and_module_where_users_import_them(name):
    function, module = registry.loss_function(name), registry.loss_class(name)
    assert getattr(crossent, function.__name__) is function
    assert getattr(crossent.functional, function.__name__) is function
    assert function.__name__ in crossent.__all__
    assert function.__name__ in crossent.functional.__all__
    assert getattr(crossent.nn, module.__name__) is module
    assert module.__name__ in crossent.nn.__all__
    assert registry.loss_class(function.__name__) is module  # the function's name is an alias


@pytest.mark.parametrize("name", NAMES)
def test_every_name_is_documented_in_losses_md(name):
    function, module = registry.loss_function(name), registry.loss_class(name)
    for word in (name, function.__name__, module.__name__):
        assert re.search(rf"\b{re.escape(word)}\b", DOCS), f"docs/losses.md never names {word}"


@pytest.mark.parametrize("name", NAMES)
def test_every_name_matches_its_float64_reference_with_gradients(name):
    assert name in REFERENCES, f"tests/reference_registry.py has no reference for {name!r}"
    args, leaf = inputs(registry.loss_kind(name))
    got = registry.get_loss(name)(*args)
    ref_args = tuple(a.detach().clone().requires_grad_(a is leaf) for a in args)
    want = REFERENCES[name](*ref_args)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    (g_got,) = torch.autograd.grad(got, leaf)
    (g_want,) = torch.autograd.grad(want, ref_args[args.index(leaf)])
    torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", TERM_LOSSES)
def test_every_term_loss_takes_the_fused_engine_path_of_linear_loss(name, monkeypatch):
    calls = []
    real = linear_api.run_fused

    def spy(x, w, b, call, *others):
        calls.append(call)
        return real(x, w, b, call, *others)

    monkeypatch.setattr(linear_api, "run_fused", spy)
    x, w = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([0, 4, 2, 1])
    got = crossent.linear_loss(x, w, t, loss=name)
    assert len(calls) == 1 and isinstance(calls[0], FusedProblem), type(calls[0]).__name__
    torch.testing.assert_close(got, registry.get_loss(name)(x @ w.T, t))


@pytest.mark.parametrize("name", TERM_LOSSES)
def test_every_term_loss_has_a_kernel_block_or_declares_none(name):
    term = registry.get_loss(name).term()
    declared = [c for c in type(term).__mro__ if "kernel" in vars(c)]
    assert declared and declared[0] is not Term, f"{type(term).__name__} declares no kernel"
    spec = _spec.term_spec(term)
    if type(term).kernel is None and term.kernel_code() is None:
        assert spec is None  # runs on the engine only, by its own declaration
    else:
        assert spec is not None and spec.code == term.kernel_code()


@pytest.mark.parametrize("code", list(KernelCode), ids=lambda c: c.name)
def test_every_kernel_code_has_a_block_in_the_template(code):
    assert re.search(rf"TERM == _{code.name}\b", TEMPLATE), f"no `TERM == _{code.name}` block"


def test_every_term_class_declares_its_kernel_when_defined():
    with pytest.raises(TypeError, match="must declare `kernel`"):

        class Undeclared(Term):
            def value(self, s, p):
                return -p * s

    public = [getattr(crossent.terms, n) for n in crossent.terms.__all__]
    classes = [c for c in public if inspect.isclass(c) and issubclass(c, Term) and c is not Term]
    assert len(classes) >= 14
    assert all(c.kernel is None or isinstance(c.kernel, KernelCode) for c in classes)
