"""Dispatch and back-end switch, torch.compile, int64 offsets, the fused-linear entry point."""

import os
import subprocess
import sys
import warnings

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import torch
import triton
import triton.language as tl

import crossent
from crossent import kernels
from crossent.core import config
from crossent.engine import multiclass as engine
from crossent.engine import term_loss
from crossent.kernels.ops import loss_and_grad_inplace
from crossent.kernels.triton_engine import row_offsets
from crossent.terms import CrossEntropyTerm, FocalTerm, WeightedSumTerm
from tests.kernels._util import DEVICE, kernel_only, run_engine

CE = CrossEntropyTerm()


def _spy_engine(monkeypatch):
    calls = []
    original = engine.run

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "run", spy)
    return calls


def test_set_backend_rejects_unknown_names():
    with pytest.raises(
        ValueError, match="Expected `backend` to be one of 'auto', 'triton', 'torch'"
    ):
        kernels.set_backend("cuda")


def test_asking_for_triton_without_triton_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    monkeypatch.setitem(config._triton, "warned", False)
    kernels.set_backend("triton")
    calls = _spy_engine(monkeypatch)
    z, t = torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.warns(kernels.KernelUnavailableWarning, match="Triton is not installed"):
        loss = crossent.cross_entropy(z, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message, not one per call
        crossent.cross_entropy(z, t)
    assert calls == [1, 1]
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(z, t))


def test_a_triton_that_does_not_import_counts_as_absent(tmp_path):
    """Triton present but broken (here: its import blocked): explicit requests fall back."""
    script = tmp_path / "blocked.py"
    script.write_text(
        "import sys, warnings\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'triton' or name.startswith('triton.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: object() if n == 'triton' else real(n, *a)\n"
        "import torch, crossent\n"
        "from crossent import kernels\n"
        "kernels.set_backend('triton')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    loss = crossent.cross_entropy(torch.zeros(2, 4), torch.tensor([0, 1]))\n"
        "assert not kernels.triton_available()\n"
        "assert [x.category.__name__ for x in w] == ['KernelUnavailableWarning'], w\n"
        "assert abs(loss.item() - 1.3862944) < 1e-6\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value,expected", [("Torch", "torch"), (" auto ", "auto")])
def test_backend_environment_variable_is_read_in_any_case(value, expected, tmp_path):
    code = "from crossent import kernels; print(kernels.get_backend())"
    env = {**os.environ, "CROSSENT_BACKEND": value}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == expected, out.stderr


def test_unknown_backend_in_the_environment_is_an_error_naming_it():
    code = "import crossent"
    env = {**os.environ, "CROSSENT_BACKEND": "cuda"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "CROSSENT_BACKEND" in out.stderr and "'cuda'" in out.stderr


def test_auto_without_triton_falls_back_silently(monkeypatch):
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    kernels.set_backend("auto")
    calls = _spy_engine(monkeypatch)
    z = torch.randn(2, 3, device=DEVICE)
    crossent.cross_entropy(z, torch.tensor([0, 1], device=DEVICE))
    assert calls == [1]


def test_auto_keeps_cpu_tensors_on_the_engine(monkeypatch):
    kernels.set_backend("auto")
    calls = _spy_engine(monkeypatch)
    crossent.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]))
    assert calls == [1]


@pytest.mark.skipif(DEVICE == "cuda", reason="CPU tensors without the interpreter: CPU-only run")
def test_triton_backend_needs_a_device_it_can_use(monkeypatch):
    monkeypatch.setattr(kernels, "interpreter_enabled", lambda: False)
    with pytest.raises(ValueError, match="CUDA device"):
        crossent.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]))


def test_unsupported_calls_fall_back_to_the_engine(monkeypatch):
    calls = _spy_engine(monkeypatch)
    t = torch.tensor([0, 1], device=DEVICE)
    crossent.cross_entropy(torch.randn(2, 3, dtype=torch.float64, device=DEVICE), t)
    mixed = WeightedSumTerm([(0.5, CE), (0.5, FocalTerm(2.0))])
    term_loss(torch.randn(2, 3, device=DEVICE), t, mixed)
    probs = torch.softmax(torch.randn(2, 3, device=DEVICE), 1).requires_grad_()
    crossent.cross_entropy(torch.randn(2, 3, device=DEVICE), probs)
    assert calls == [1, 1, 1]


def test_bad_input_raises_before_any_launch():
    with kernel_only(), pytest.raises(ValueError, match="Expected `target`"):
        crossent.cross_entropy(
            torch.randn(2, 3, device=DEVICE), torch.tensor([0, 3], device=DEVICE)
        )


@pytest.mark.parametrize("checks", [True, False], ids=["default_checks", "checks_off"])
def test_torch_compile_sees_one_operator_without_graph_break(checks):
    """With the default settings too: the host-side checks step aside while compiling."""
    crossent.set_validation(checks)
    crossent.set_probability_warning(checks)

    def f(z, t):
        return crossent.cross_entropy(z, t, label_smoothing=0.1) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    z = torch.randn(4, 7, device=DEVICE, requires_grad=True)
    t = torch.randint(0, 7, (4,), device=DEVICE)
    with kernel_only():
        loss = compiled(z, t)
    (grad,) = torch.autograd.grad(loss, z)
    ref_loss, ref_grad = run_engine(z, t, CE, upstream=False, label_smoothing=0.1)
    torch.testing.assert_close(loss.detach().cpu(), 2 * ref_loss)
    torch.testing.assert_close(grad.cpu(), 2 * ref_grad)


@triton.jit
def _offsets_kernel(out_ptr, rows_ptr, n, D, s_n, s_d, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    rows = tl.load(rows_ptr + i, mask=i < n, other=0)
    tl.store(out_ptr + i, row_offsets(rows, D, s_n, s_d), mask=i < n)


def test_row_offsets_are_int64_past_two_to_the_31():
    # rows near the end of a (17000, 128256) tensor: row * K is beyond int32
    k = 128256
    rows = torch.tensor([0, 1, 16743, 16999], dtype=torch.int32, device=DEVICE)
    out = torch.empty(4, dtype=torch.int64, device=DEVICE)
    _offsets_kernel[(1,)](out, rows, 4, 1, k, 1, BLOCK=4)
    assert out.tolist() == [r * k for r in rows.tolist()]
    assert out.max().item() > 2**31
    # K-dimensional layout (N, K, D): row r = n * D + d sits at n * K * D + d
    out2 = torch.empty(4, dtype=torch.int64, device=DEVICE)
    _offsets_kernel[(1,)](out2, rows, 4, 7, k * 7, 1, BLOCK=4)
    assert out2.tolist() == [(r // 7) * k * 7 + r % 7 for r in rows.tolist()]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device with ~10 GB free")
def test_more_than_two_to_the_31_logits_on_gpu():
    n, k = 17000, 128256  # 2.18e9 logits
    z = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    t = torch.randint(0, k, (n,), device="cuda")
    x = z.requires_grad_()
    loss = crossent.cross_entropy(x, t, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    tail = slice(n - 3, n)  # rows whose offsets exceed int32
    ref_x = z[tail].detach().float().requires_grad_()
    ref = torch.nn.functional.cross_entropy(ref_x, t[tail], reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), ref_x)
    torch.testing.assert_close(loss[tail], ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad[tail].float(), ref_grad, rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize("kind", ["index", "smoothed", "probs"])
def test_loss_and_grad_inplace_entry_point(kind):
    z = 3 * torch.randn(5, 19)
    weight = torch.rand(19) + 0.5
    if kind == "probs":
        t, eps = torch.softmax(torch.randn(5, 19), 1), 0.0
    else:
        t, eps = torch.randint(0, 19, (5,)), (0.1 if kind == "smoothed" else 0.0)
        t[0] = -100
    term = FocalTerm(2.0)
    ref_rows, _ = run_engine(z, t, term, reduction="none", weight=weight, label_smoothing=eps)
    ref_loss, ref_grad = run_engine(
        z, t, term, upstream=False, reduction="sum", weight=weight, label_smoothing=eps
    )
    buf = z.to(DEVICE)
    scale = torch.tensor(0.5, device=DEVICE)
    rows = loss_and_grad_inplace(
        buf, t.to(DEVICE), term, weight=weight.to(DEVICE), label_smoothing=eps, grad_scale=scale
    )
    torch.testing.assert_close(rows.cpu(), ref_rows, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(buf.cpu(), 0.5 * ref_grad, rtol=2e-5, atol=2e-6)
