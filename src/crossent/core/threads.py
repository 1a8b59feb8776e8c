"""Blocks of one call spread over the intra-op threads, each thread taking the next free block.

PyTorch's parallel operations split their work evenly between the threads and wait for the
slowest (a static schedule): when another process shares a core (a data-loader worker, a
busy neighbour), every operation waits for the thread that core is not running. A chunked
pass issues a few such operations per chunk of rows, hundreds per call. :func:`run_blocks`
gives whole blocks to the threads instead: a thread takes the next block as soon as it has
finished one (a dynamic schedule), and inside a block the operations run on that thread alone
(``torch.set_num_threads(1)`` while blocks run, restored after), so a thread that is preempted
delays only its own block and the others take over the rest.

Measured at (4096, 32000) fp32 cross-entropy forward + backward on 2 shared cores (load 4-6):
the per-chunk parallel operations took 4.25 s (0.57x PyTorch's time), blocks over threads
0.23 s (2.3x faster than PyTorch; ``benchmarks/bench_cross_entropy.py``, ``shared`` rows).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}
# Calls running blocks now, and the thread count to restore when the last one ends (two
# threads of the caller may run losses at once: the count is set once and restored once).
_state = {"active": 0, "threads": 1}


def _forget_pools() -> None:
    """In a forked child: the parent's helper threads do not exist there (a fresh start)."""
    global _lock
    _lock = threading.Lock()
    _pools.clear()
    _state.update(active=0, threads=1)


os.register_at_fork(after_in_child=_forget_pools)


def _executor(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` helper threads (made on first use)."""
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="crossent")
    return _pools[workers]


def _enter() -> int:
    """Make operations single-threaded; the number of threads the blocks may use."""
    with _lock:
        if _state["active"] == 0:
            _state["threads"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _state["active"] += 1
        return _state["threads"]


def _leave() -> None:
    with _lock:
        _state["active"] -= 1
        if _state["active"] == 0:
            torch.set_num_threads(_state["threads"])


def run_blocks(blocks: Sequence[T], work: Callable[[T], None]) -> None:
    """Call ``work(block)`` for every block, over ``torch.get_num_threads()`` threads.

    ``work`` must write only what belongs to its block (disjoint slices of shared outputs;
    per-block partial results, combined by the caller in block order so that results do not
    depend on which thread ran what). The calling thread takes part; the helper threads run
    with the caller's grad and inference modes. With one thread, inside another call's
    blocks, or for one block, it is a plain loop.
    """
    if len(blocks) < 2 or torch.get_num_threads() < 2:
        for block in blocks:
            work(block)
        return
    taken = iter(blocks)
    take_lock = threading.Lock()

    def take() -> tuple[bool, T | None]:
        with take_lock:
            for block in taken:
                return True, block
            return False, None

    grad_mode = torch.is_grad_enabled()
    inference = torch.is_inference_mode_enabled()

    def loop() -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad_mode):
            found, block = take()
            while found:
                work(block)
                found, block = take()

    threads = min(_enter(), len(blocks))
    try:
        with _lock:
            pool = _executor(threads - 1) if threads > 1 else None
        futures = [pool.submit(loop) for _ in range(threads - 1)] if pool else []
        try:
            loop()
        finally:
            errors = [f.exception() for f in futures]  # waits for every helper
    finally:
        _leave()
    for err in errors:
        if err is not None:
            raise err
