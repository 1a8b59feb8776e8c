"""Vocabulary-parallel losses on CPU, gloo, world 2, against one process on the full logits.

Usage::

    python benchmarks/bench_vocab_parallel.py [--rows 4096] [--classes 32000] [--iters 5]

float32 logits ``(rows, classes)`` with class-index targets; the distributed side splits the
classes in two halves, one per gloo rank (``torch.multiprocessing`` on this machine), each
rank with one thread; the single process runs ``crossent.get_loss(loss)`` on the full logits
with one thread and with two (the two ranks together use two cores). Per loss (cross-entropy,
cross-entropy with label smoothing 0.1 — the full route, the target built per chunk —
and focal with gamma 2): forward+backward time
(median wall and CPU seconds of ``--iters`` after one warm-up; each rank's own; CPU time is
the figure to compare on a shared machine), peak extra memory of one
step (each side in its own process tree with ``MALLOC_MMAP_THRESHOLD_=131072``,
``/proc/self/clear_refs``, ``VmHWM - VmRSS before``; per rank for the distributed side; the
new gradient included, the logits not), and every collective of one step as
:func:`crossent.distributed.record_collectives` logs it (kind, op, count, bytes each rank
contributes). Last, on one rank's logits ``(rows, classes / 2)`` in a group of one, the
vocabulary-parallel path and the engine alternate step by step (median CPU seconds): the
per-logit cost of the path itself, free of the other jobs on a shared machine. Writes
``benchmarks/results/vocab_parallel.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
import crossent  # noqa: E402
from crossent.distributed import record_collectives, vocab_parallel_loss  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LOSSES = {
    "ce": ("ce", {}),
    "ce, label_smoothing=0.1": ("ce", {"label_smoothing": 0.1}),
    "focal, gamma=2": ("focal", {"gamma": 2.0}),
}
WORLD = 2


def _data(rows: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, classes, generator=gen)
    target = torch.randint(0, classes, (rows,), generator=gen)
    return logits, target


def _measure_steps(step_fn, iters: int) -> dict:
    """Wall and CPU time of ``iters`` steps after one warm-up, then one step's peak memory.

    CPU time (``time.process_time``: every thread of this process) is the figure to compare
    on a shared machine, where the wall time also counts the other jobs' turns.
    """
    step_fn()
    wall, cpu = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        step_fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    peak = _measure.peak_extra_bytes(step_fn)
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "median_cpu_s": statistics.median(cpu),
        "times_s": wall,
        "cpu_s": cpu,
        "peak_extra_bytes": peak,
    }


def single(rows: int, classes: int, iters: int, threads: int) -> dict:
    """One process, the full logits."""
    torch.set_num_threads(threads)
    logits, target = _data(rows, classes)
    out = {}
    for label, (name, options) in LOSSES.items():
        module = crossent.get_loss(name, **options)

        def step(module=module) -> None:
            z = logits.detach().requires_grad_()
            module(z, target).backward()

        out[label] = _measure_steps(step, iters)
    return out


def _rank(rank: int, path: str, rows: int, classes: int, iters: int, result_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=WORLD)
    logits, target = _data(rows, classes)
    local = logits.chunk(WORLD, dim=1)[rank].contiguous()
    del logits
    out = {}
    for label, (name, options) in LOSSES.items():

        def step(name=name, options=options) -> None:
            z = local.detach().requires_grad_()
            vocab_parallel_loss(z, target, name, **options).backward()

        dist.barrier()
        result = _measure_steps(step, iters)
        with record_collectives() as calls:
            step()
        counts = collections.Counter((c.kind, c.op, c.bytes) for c in calls)
        result["collectives"] = [
            {"kind": k, "op": op, "bytes_each": b, "count": n} for (k, op, b), n in counts.items()
        ]
        result["collective_bytes_per_step"] = sum(c.bytes for c in calls)
        result["collective_calls_per_step"] = len(calls)
        out[label] = result
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


def distributed(rows: int, classes: int, iters: int) -> dict:
    """Two gloo ranks, each with its half of the classes."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(
            _rank,
            args=(str(Path(tmp, "init")), rows, classes, iters, tmp),
            nprocs=WORLD,
            join=True,
            start_method="fork",
        )
        return {
            f"rank{r}": json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(WORLD)
        }


def _overhead_rank(rank: int, path: str, rows: int, classes: int, iters: int, out: str) -> None:
    """One gloo rank (world 1): the vocabulary-parallel path and the engine, interleaved."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=1)
    logits, target = _data(rows, classes // WORLD)
    sides = {}
    for label, (name, options) in LOSSES.items():
        module = crossent.get_loss(name, **options)
        sides[f"{label} / vocab_parallel_loss"] = (vocab_parallel_loss, name, options)
        sides[f"{label} / engine"] = (None, module, None)
    times: dict[str, list[float]] = {key: [] for key in sides}
    for i in range(iters + 1):
        for key, (fn, name, options) in sides.items():
            z = logits.detach().requires_grad_()
            c0 = time.process_time()
            loss = fn(z, target, name, **options) if fn is not None else name(z, target)
            loss.backward()
            if i:  # the first round warms up
                times[key].append(time.process_time() - c0)
    medians = {key: statistics.median(v) for key, v in times.items()}
    Path(out, "overhead.json").write_text(json.dumps(medians))
    dist.destroy_process_group()


def overhead(rows: int, classes: int, iters: int) -> dict:
    """Median CPU seconds, interleaved in one process, on one rank's logits (world 1)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = (str(Path(tmp, "init")), rows, classes, iters, tmp)
        mp.start_processes(_overhead_rank, args=args, nprocs=1, join=True, start_method="fork")
        return json.loads(Path(tmp, "overhead.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument(
        "--side", choices=["single1", "single2", "world2", "overhead"], default=None
    )
    args = parser.parse_args()
    shape = [args.rows, args.classes, args.iters]
    if args.side == "world2":
        print(json.dumps(distributed(*shape)))
        return
    if args.side == "overhead":
        print(json.dumps(overhead(*shape)))
        return
    if args.side is not None:
        print(json.dumps(single(*shape, threads=int(args.side[-1]))))
        return
    env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    sides = {}
    for side in ("single2", "world2", "single1", "overhead"):
        child_args = [f"--rows={args.rows}", f"--classes={args.classes}", f"--iters={args.iters}"]
        sides[side] = _measure.run_child(__file__, [*child_args, f"--side={side}"], env)
        print(side, json.dumps(_summary(sides[side])), flush=True)
    result = {
        "shape": [args.rows, args.classes],
        "dtype": "float32",
        "world": WORLD,
        "backend": "gloo",
        "environment": _measure.environment(),
        "sides": sides,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vocab_parallel.json").write_text(json.dumps(result, indent=1))


def _summary(side: dict) -> dict:
    """Median seconds and peak MiB per loss (per rank for the distributed side)."""
    if all(isinstance(v, float) for v in side.values()):  # the overhead side
        return {key: round(v, 3) for key, v in side.items()}
    if "rank0" in side:
        return {r: _summary(v) for r, v in side.items()}
    return {
        loss: {
            "s": round(v["median_s"], 3),
            "cpu_s": round(v["median_cpu_s"], 3),
            "MiB": round(v["peak_extra_bytes"] / 2**20),
            **({"bytes": v["collective_bytes_per_step"]} if "collectives" in v else {}),
        }
        for loss, v in side.items()
    }


if __name__ == "__main__":
    main()
