"""Forward+backward time and peak extra memory: crossent.cross_entropy vs PyTorch (CPU).

Usage: ``python benchmarks/bench_cross_entropy.py [--iters 10] [--quick] [--no-shared]``

Logits are produced by an operation (``base.clone()`` of a leaf that requires grad, made
outside the measured region, as in a model). Sides: PyTorch's ``F.cross_entropy``, crossent,
and crossent with ``inplace_backward=True``. Environments, never compared across: the
default, ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's huge-page CPU allocator), and ``shared``: the
default while a CPU-bound helper process pinned to core 0 (a busy loop, as a data-loader
worker is) shares the cores with both sides (``_measure.busy_core``; memory as in the
default). Each row records the load average before and after its timing. Writes
``benchmarks/results/cross_entropy.json`` with every iteration's time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
import crossent  # noqa: E402

SHAPES = [(4096, 32000), (1024, 128256)]
SMOOTHING = [0.0, 0.1]
SIDES = ["pytorch", "crossent", "crossent_inplace"]
ENVS = {"default": {}, "thp": {"THP_MEM_ALLOC_ENABLE": "1"}}


def make_step(side: str, base: torch.Tensor, target: torch.Tensor, eps: float):
    def prepare():
        base.grad = None
        logits = base.clone()

        def step():
            if side == "pytorch":
                loss = F.cross_entropy(logits, target, label_smoothing=eps)
            else:
                loss = crossent.cross_entropy(
                    logits, target, label_smoothing=eps, inplace_backward=side.endswith("inplace")
                )
            loss.backward()

        return step

    return prepare


def inputs(n: int, k: int):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, k, generator=g).requires_grad_()
    target = torch.randint(0, k, (n,), generator=g)
    return base, target


def child_time(n: int, k: int, eps: float, iters: int) -> dict:
    torch.set_num_threads(2)
    base, target = inputs(n, k)
    sides = {s: make_step(s, base, target, eps) for s in SIDES}
    times = _measure.interleaved_times(sides, iters)
    return {"times": times, "env": _measure.environment()}


def child_memory(n: int, k: int, eps: float, side: str) -> dict:
    torch.set_num_threads(2)
    base, target = inputs(n, k)
    prepare = make_step(side, base, target, eps)
    prepare()()  # warm-up (allocator, thread pool)
    step = prepare()
    return {"peak_extra_bytes": _measure.peak_extra_bytes(step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    parser.add_argument(
        "--no-shared", action="store_true", help="skip the rows timed beside a busy core"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "cross_entropy.json")
    )
    args = parser.parse_args()
    if args.child:
        kind, n, k, eps, *rest = args.child
        if kind == "time":
            result = child_time(int(n), int(k), float(eps), int(rest[0]))
        else:
            result = child_memory(int(n), int(k), float(eps), rest[0])
        print(json.dumps(result))
        return
    shapes = [(256, 3000), (64, 12000)] if args.quick else SHAPES
    me = str(Path(__file__).resolve())
    records = []
    for env_name, env in ENVS.items():
        mem_env = dict(env, MALLOC_MMAP_THRESHOLD_="131072")
        for n, k in shapes:
            for eps in SMOOTHING:
                child = ["--child", "time", str(n), str(k), str(eps), str(args.iters)]
                memory = {
                    side: _measure.run_child(
                        me, ["--child", "memory", str(n), str(k), str(eps), side], mem_env
                    )["peak_extra_bytes"]
                    for side in SIDES
                }
                timings = {env_name: _measure.run_child(me, child, env)}
                if env_name == "default" and not args.no_shared:
                    with _measure.busy_core(0):
                        timings["shared"] = _measure.run_child(me, child, env)
                for name, timed in timings.items():
                    rec = {
                        "env": name,
                        "shape": [n, k],
                        "label_smoothing": eps,
                        **_measure.timing_fields(timed, memory),
                    }
                    records.append(rec)
                    print_row(rec)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(records, indent=1))
    print(f"wrote {args.out}")


def print_row(rec: dict) -> None:
    med, mem = rec["median_s"], rec["peak_extra_bytes"]
    gib = 1024**3
    t0, m0 = med["pytorch"], mem["pytorch"]
    n, k = rec["shape"]
    line = (
        f"{rec['env']:8s} ({n}, {k}) eps={rec['label_smoothing']:.1f} | "
        f"pytorch {t0:.3f}s {m0 / gib:.2f}GiB | "
        f"crossent {med['crossent']:.3f}s ({t0 / med['crossent']:.2f}x) "
        f"{mem['crossent'] / gib:.2f}GiB ({mem['crossent'] / m0:.2f}x) | "
        f"inplace {med['crossent_inplace']:.3f}s ({t0 / med['crossent_inplace']:.2f}x) "
        f"{mem['crossent_inplace'] / gib:.3f}GiB ({mem['crossent_inplace'] / m0:.3f}x) | "
        f"load {rec['loadavg_before_after'][0][0]:.1f}->{rec['loadavg_before_after'][1][0]:.1f}"
    )
    print(line, flush=True)


if __name__ == "__main__":
    main()
