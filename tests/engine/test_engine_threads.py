"""The engine's chunk loops share their chunks out over the threads (``run_blocks``).

Under shared cores an operation split evenly between threads waits for the one that is not
running; the engine gives whole chunks to whichever thread is free instead, with
single-threaded operations inside a chunk. Results must not depend on which thread ran what
(per-chunk sums are added in chunk order), so 1 and 2 threads agree bit for bit.
"""

import threading
import time

import pytest
import torch

import crossent
from crossent.engine import binary as binary_engine
from crossent.engine import multiclass as engine
from crossent.linear import linear_cross_entropy


@pytest.fixture
def small_chunks(monkeypatch):
    """Many chunks on small inputs, two threads."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(binary_engine, "BLOCK_ELEMENTS", 16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _spy(monkeypatch, module, name):
    """Record (thread, intra-op threads) of each call of ``module.name``; stall the first."""
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((threading.get_ident(), torch.get_num_threads()))
        if len(calls) == 1:
            time.sleep(0.3)  # a preempted thread: the other one takes the chunks left
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize(
    "route,call",
    [
        ("fast_chunk", lambda z, t: crossent.focal_loss(z, t)),
        ("linear_chunk", lambda z, t: crossent.cross_entropy(z, t, label_smoothing=0.1)),
        ("full_chunk", lambda z, t: crossent.mae_loss(z, t, label_smoothing=0.1)),
    ],
)
def test_chunks_run_on_both_threads(small_chunks, monkeypatch, route, call):
    z = torch.randn(16, 5, 4, requires_grad=True)  # (N, K, D): the chunked pass
    t = torch.randint(0, 5, (16, 4))
    calls = _spy(monkeypatch, engine, route)
    call(z, t).backward()
    assert len({thread for thread, _ in calls}) == 2
    assert {threads for _, threads in calls} == {1}


@pytest.mark.parametrize("name", ["ce", "focal"])
def test_softmax_rows_run_on_both_threads(small_chunks, monkeypatch, name):
    """(N, K) logits: the one-hot route's chunks (one fused softmax each)."""
    z = torch.randn(32, 6, requires_grad=True)
    t = torch.randint(0, 6, (32,))
    calls = _spy(monkeypatch, torch, "softmax")
    (crossent.cross_entropy if name == "ce" else crossent.focal_loss)(z, t).backward()
    assert len({thread for thread, _ in calls}) == 2
    assert {threads for _, threads in calls} == {1}


def test_binary_blocks_run_on_both_threads(small_chunks, monkeypatch):
    z = torch.randn(32, 4, requires_grad=True)
    y = (torch.rand(32, 4) < 0.5).float()
    calls = _spy(monkeypatch, binary_engine._BinaryProblem, "_block")
    crossent.sigmoid_focal_loss(z, y).backward()
    assert len({thread for thread, _ in calls}) == 2


CALLS = {
    "ce": lambda z, t, y: crossent.cross_entropy(z, t),
    "ce_smooth_inplace": lambda z, t, y: crossent.cross_entropy(
        z * 1, t, label_smoothing=0.1, inplace_backward=True
    ),
    "focal_none": lambda z, t, y: crossent.focal_loss(z, t, reduction="none") * 0.5,
    "gce_weighted": lambda z, t, y: crossent.generalized_cross_entropy(
        z, t, weight=torch.arange(1.0, 8.0)
    ),
    "bce": lambda z, t, y: crossent.binary_cross_entropy_with_logits(z, y),
    "asl_sum": lambda z, t, y: crossent.asymmetric_loss(z, y, reduction="sum"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_one_and_two_threads_agree_bit_for_bit(small_chunks, name):
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(40, 7, generator=g)
    t = torch.randint(0, 7, (40,), generator=g)
    y = (torch.rand(40, 7, generator=g) < 0.5).float()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        z = z0.clone().requires_grad_()
        loss = CALLS[name](z, t, y)
        (grad,) = torch.autograd.grad(loss.sum() * 3, z)
        results.append((loss.detach(), grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_fused_bias_gradient_sums_chunks_in_order(small_chunks):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g).half()
    w = torch.randn(9, 6, generator=g).half()
    b = torch.randn(9, generator=g).half()
    t = torch.randint(0, 9, (40,), generator=g)
    grads = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        bb = b.clone().requires_grad_()
        linear_cross_entropy(x, w, t, linear_bias=bb, chunk_size=40).backward()
        grads.append(bb.grad)
    assert torch.equal(grads[0], grads[1])
