"""Design probe: form the gradient in forward (the engine) or recompute it in backward?

Usage: ``python benchmarks/probe_gradient_timing.py [--iters 10]``

Both designs read the logits twice and write the gradient once at best; they differ in how
many exponentials they evaluate. "recompute" is written here for the measurement only: its
forward saves the per-row log-sum-exp (chunked ``logsumexp`` + gather), its backward forms
``softmax - onehot`` again chunk by chunk. Same inputs, interleaved, median of ``--iters``
after warm-up, float32, 2 threads, plain cross-entropy at (4096, 32000).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
import crossent  # noqa: E402

ROWS = 32  # rows per chunk: 32 x 32000 floats = 4 MiB, the engine's chunk size


class Recompute(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, t):
        lse = torch.empty(z.shape[0], dtype=z.dtype)
        for r in range(0, z.shape[0], ROWS):
            lse[r : r + ROWS] = torch.logsumexp(z[r : r + ROWS], dim=1)
        ctx.save_for_backward(z, t, lse)
        return (lse - z.gather(1, t[:, None]).squeeze(1)).mean()

    @staticmethod
    def backward(ctx, go):
        z, t, lse = ctx.saved_tensors
        grad = torch.empty_like(z)
        scale = go / z.shape[0]
        for r in range(0, z.shape[0], ROWS):
            g = grad[r : r + ROWS]
            torch.sub(z[r : r + ROWS], lse[r : r + ROWS, None], out=g)
            g.exp_().mul_(scale)
            g.scatter_add_(1, t[r : r + ROWS, None], torch.full((g.shape[0], 1), -float(scale)))
        return grad, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4096, 32000, generator=g).requires_grad_()
    target = torch.randint(0, 32000, (4096,), generator=g)

    def side(fn):
        def prepare():
            base.grad = None
            logits = base.clone()
            return lambda: fn(logits).backward()

        return prepare

    sides = {
        "engine (gradient in forward)": side(lambda z: crossent.cross_entropy(z, target)),
        "recompute in backward": side(lambda z: Recompute.apply(z, target)),
    }
    times = _measure.interleaved_times(sides, args.iters)
    ref = torch.nn.functional.cross_entropy(base.detach(), target)
    check = Recompute.apply(base.detach().clone(), target)
    assert torch.allclose(ref, check), "probe is not cross-entropy"
    for name, ts in times.items():
        print(f"{name:32s} median {_measure.median(ts):.3f} s")
    out = Path(__file__).parent / "results" / "probe_gradient_timing.json"
    out.write_text(json.dumps({"times_s": times, "environment": _measure.environment()}, indent=1))


if __name__ == "__main__":
    main()
