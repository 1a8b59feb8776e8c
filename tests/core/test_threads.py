"""``run_blocks``: blocks handed to whichever thread is free (a dynamic schedule)."""

import multiprocessing
import threading
import time

import pytest
import torch

import crossent
from crossent.core.threads import run_blocks
from crossent.engine import multiclass


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_stalled_block_does_not_hold_up_the_others(two_threads):
    """A thread that stops (a preempted core, here a sleep) delays only its own block: the
    other thread takes every block left, where an even split would leave it half of them."""
    ran_by = {}

    def work(i):
        ran_by[i] = threading.get_ident()
        time.sleep(1.0 if i == 0 else 0.005)

    run_blocks(range(20), work)
    assert sorted(ran_by) == list(range(20))
    others = [i for i in range(1, 20) if ran_by[i] != ran_by[0]]
    assert len(others) >= 15, ran_by


def test_operations_inside_blocks_are_single_threaded_and_the_count_is_restored(two_threads):
    seen = []
    run_blocks(range(4), lambda i: seen.append(torch.get_num_threads()))
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError):
        run_blocks(range(4), lambda i: 1 / (i - 2))
    assert torch.get_num_threads() == 2


def test_nested_calls_and_one_thread_are_plain_loops(two_threads):
    inner = []

    def outer(i):
        run_blocks(range(3), lambda j: inner.append((i, j, threading.get_ident())))

    run_blocks(range(2), outer)
    for i in range(2):  # each inner loop ran on one thread, in order
        mine = [(j, t) for (o, j, t) in inner if o == i]
        assert [j for j, _ in mine] == [0, 1, 2]
        assert len({t for _, t in mine}) == 1
    torch.set_num_threads(1)
    order = []
    run_blocks(range(5), order.append)
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("inference", [False, True])
def test_helper_threads_take_the_callers_grad_and_inference_modes(two_threads, inference):
    modes = set()

    def work(i):
        time.sleep(0.01)
        modes.add((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))

    with torch.inference_mode(inference), torch.no_grad():
        run_blocks(range(6), work)
    assert modes == {(False, inference)}


def _loss_in_child(queue):
    torch.set_num_threads(2)
    z = torch.randn(64, 5, requires_grad=True)
    crossent.cross_entropy(z, torch.randint(0, 5, (64,))).backward()
    queue.put(float(z.grad.abs().sum()))


def test_a_forked_process_makes_its_own_helper_threads(two_threads, monkeypatch):
    """A data-loader worker forked after a loss ran: the parent's helper threads are not in
    the child, which must start its own instead of waiting on them forever."""
    monkeypatch.setattr(multiclass, "CHUNK_ELEMENTS", 64)
    run_blocks(range(4), lambda i: time.sleep(0.01))  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_loss_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's helper threads")
    assert child.exitcode == 0
    assert queue.get(timeout=5) > 0
