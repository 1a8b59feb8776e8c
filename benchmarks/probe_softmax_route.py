"""Design probe: the engine's per-chunk softmax, fused kernel or four passes?

Usage: ``python benchmarks/probe_softmax_route.py [--iters 7]``

Both sides turn (4096, 32000) float32 logits into ``q * c`` for one coefficient ``c`` per row,
32 rows (4 MiB) at a time, into a buffer allocated once (so page faults do not enter):

* ``four_passes``: row maximum, ``exp(z - m)`` into the buffer, its sum, scale in place
  (the in-place route of :mod:`crossent.engine`);
* ``fused_softmax``: ``torch.softmax(z, out=buffer)`` (one kernel: max, exp-and-sum, scale),
  the gather of ``q_t`` and its check against 1e-30, then the scale (the engine's route when
  the gradient has its own buffer).

2 threads, median of ``--iters`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

ROWS = 32


def four_passes(z: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> None:
    for r in range(0, z.shape[0], ROWS):
        x, o = z[r : r + ROWS], out[r : r + ROWS]
        m = x.amax(dim=1, keepdim=True)
        torch.sub(x, m, out=o).exp_()
        d = o.sum(dim=1, keepdim=True)
        o.mul_(x.gather(1, t[r : r + ROWS]) / d)


def fused_softmax(z: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> None:
    for r in range(0, z.shape[0], ROWS):
        x, o = z[r : r + ROWS], out[r : r + ROWS]
        torch.softmax(x, dim=1, out=o)
        q_t = o.gather(1, t[r : r + ROWS])
        bool((q_t >= 1e-30).all())
        o.mul_(q_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 32000, generator=g)
    t = torch.randint(0, 32000, (4096, 1), generator=g)
    out = torch.empty_like(z).fill_(0.0)
    sides = {"four_passes": four_passes, "fused_softmax": fused_softmax}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.iters):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn(z, t, out)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:>14}: {statistics.median(ts):.4f} s")


if __name__ == "__main__":
    main()
