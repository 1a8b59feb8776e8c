"""Probe: what writing a fresh logits-sized buffer costs on this machine.

Usage: ``python benchmarks/probe_fresh_memory.py [--iters 8] [--pause 0.5]``

Every non-in-place cross-entropy step must write its gradient into a new ``(N, K)`` buffer
(it becomes ``.grad``). This probe times only that: after a PyTorch cross-entropy step that
allocates and frees ~1.5 GiB (as the benchmark's other side does), and ``--pause`` seconds
(the interleaved benchmark's spacing), one ``fill_`` of a 500 MiB float32 buffer that is

* ``fresh``: ``torch.empty_like`` (4 KiB pages),
* ``fresh_huge``: ``torch.empty_like`` advised ``MADV_HUGEPAGE`` before the first touch
  (what crossent did until 2026-11-23; it now allocates as PyTorch does),
* ``reused``: allocated once before the loop (the cost of the writes alone).

``fresh - reused`` is what the kernel (and, in a VM, the hypervisor) spends handing out new
pages; it is paid by every fresh allocation, PyTorch's included. Float32, 2 threads, shape
(4096, 32000), medians of ``--iters`` rounds. Writes ``benchmarks/results/fresh_memory.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402

_HUGE = 2 << 20
_MADV_HUGEPAGE = 14


def empty_advised_huge(like: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(like)`` with its whole 2 MiB pages advised ``MADV_HUGEPAGE``."""
    out = torch.empty_like(like)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    start = -(-out.data_ptr() // _HUGE) * _HUGE
    end = (out.data_ptr() + out.numel() * out.element_size()) // _HUGE * _HUGE
    if end > start:
        libc.madvise(start, end - start, _MADV_HUGEPAGE)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4096, 32000, generator=g).requires_grad_()
    target = torch.randint(0, 32000, (4096,), generator=g)
    reused = torch.empty_like(base).fill_(0.0)
    makers = {
        "fresh": lambda: torch.empty_like(base),
        "fresh_huge": lambda: empty_advised_huge(base.detach()),
        "reused": lambda: reused,
    }
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(args.iters):
        for name, make in makers.items():
            base.grad = None
            F.cross_entropy(base.clone(), target).backward()  # PyTorch's allocations come and go
            base.grad = None
            time.sleep(args.pause)
            t0 = time.perf_counter()
            make().fill_(1.0)
            times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, med in medians.items():
        print(f"{name:>10}: {med:.3f} s  (all: {' '.join(f'{t:.3f}' for t in times[name])})")
    out = Path(__file__).resolve().parent / "results" / "fresh_memory.json"
    out.write_text(
        json.dumps({"times": times, "medians": medians, "env": _measure.environment()}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
