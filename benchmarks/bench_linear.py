"""Fused linear + loss: forward+backward time and peak extra memory against PyTorch.

Usage::

    python benchmarks/bench_linear.py [--iters 5] [--chunks 64 256] [--quick]      # CPU
    python benchmarks/bench_linear.py --loss nce [--iters 3]                       # CPU, any loss
    python benchmarks/bench_linear.py --device cuda [--iters 20] [--quick]         # GPU

CPU (``torch.set_num_threads(2)``, float32, 4096 x 2048 -> 32000, class-index targets):
crossent's ``linear_cross_entropy`` (default chunk, plus the ``--chunks`` sizes) against
PyTorch 2.13's ``F.linear_cross_entropy`` with its chunked path
(``options=LinearCrossEntropyOptions()``, the memory-saving one) and the unfused
``F.cross_entropy(x @ w.T, t)`` (what ``options=None`` runs). Times: sides interleaved in one
process, median after one warm-up; peak extra memory: each side in its own process
(``MALLOC_MMAP_THRESHOLD_=131072``, ``/proc/self/clear_refs``, ``VmHWM - VmRSS before``) after
one warm-up step whose gradients are dropped, so the measured step allocates its own
``.grad``. Writes ``benchmarks/results/linear_cpu.json``. With ``--loss NAME`` (a registry
loss other than ``ce``): ``crossent.linear_loss(x, w, t, NAME)`` against the registry module on
``F.linear(x, w)``, same method, at 2048 x 1024 -> 32000 (targets of the loss's kind: class
indices, 0.1% positive labels, teacher logits); writes ``linear_cpu_NAME.json``.

CUDA (bf16, 8192 x 4096 -> 128256 and 16384 x 2048 -> 32000, CE and focal): crossent with
float32 accumulation and in the lean mode (bf16 accumulation, small chunks) against unfused
PyTorch, ``torch.compile`` of it, PyTorch's chunked ``F.linear_cross_entropy`` (when this
PyTorch has it), Liger Kernel's fused linear cross-entropy and Cut Cross-Entropy (when
importable; CE only), and the three matrix products alone. CUDA events, median of
``--iters`` interleaved iterations after warm-up; ``torch.cuda.max_memory_allocated`` minus
the memory before the step (inputs and weights excluded, new ``.grad`` included). Writes
``benchmarks/results/linear_gpu.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
from crossent import registry  # noqa: E402
from crossent.linear import linear_cross_entropy, linear_loss  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CPU_SHAPE = (4096, 2048, 32000)
CPU_OTHER_LOSS_SHAPE = (2048, 1024, 32000)
GPU_SHAPES = [(8192, 4096, 128256), (16384, 2048, 32000)]
GAMMA = 2.0
GIB = 1024**3


# ---------------------------------------------------------------------------- steps


def naive_focal(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The focal loss as usually written: CE per row, p_t = exp(-CE), (1 - p_t)^g CE."""
    ce = F.cross_entropy(logits, t, reduction="none")
    return ((1 - torch.exp(-ce)) ** GAMMA * ce).mean()


def unfused_ce(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(x @ w.T, t)


def unfused_focal(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return naive_focal(x @ w.T, t)


def _liger() -> Callable | None:
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError:
        return None

    def fn(x, w, t):
        out = liger_fused_linear_cross_entropy(x, w, t)
        return out[0] if isinstance(out, tuple) else out

    return fn


def _cce() -> Callable | None:
    try:
        from cut_cross_entropy import linear_cross_entropy as cce
    except ImportError:
        return None
    return lambda x, w, t: cce(x, w, t)


def cpu_loss_functions(loss: str, chunks: list[int]) -> dict[str, Callable]:
    """The CPU sides: those of :func:`loss_functions` for CE, else fused against unfused."""
    if loss == "ce":
        return loss_functions("cpu", loss, chunks)
    module = registry.get_loss(loss)
    return {
        "crossent": lambda x, w, t: linear_loss(x, w, t, loss),
        "pytorch_unfused": lambda x, w, t: module(F.linear(x, w), t),
    }


def loss_functions(device: str, loss: str, chunks: list[int]) -> dict[str, Callable]:
    """Side name -> ``fn(x, w, t)`` returning the scalar loss (CE or focal)."""
    sides: dict[str, Callable] = {}
    if loss == "ce":
        sides["crossent"] = lambda x, w, t: linear_cross_entropy(x, w, t)
        for rows in chunks:
            sides[f"crossent_chunk{rows}"] = lambda x, w, t, r=rows: linear_cross_entropy(
                x, w, t, chunk_size=r
            )
    else:
        sides["crossent"] = lambda x, w, t: linear_loss(x, w, t, "focal", gamma=GAMMA)
    if device == "cuda":
        lean = torch.bfloat16
        if loss == "ce":
            sides["crossent_lean"] = lambda x, w, t: linear_cross_entropy(
                x, w, t, accumulate_dtype=lean
            )
        else:
            sides["crossent_lean"] = lambda x, w, t: linear_loss(
                x, w, t, "focal", gamma=GAMMA, accumulate_dtype=lean
            )
    unfused = unfused_ce if loss == "ce" else unfused_focal
    sides["pytorch_unfused"] = unfused
    if device == "cuda":
        sides["torch_compile"] = torch.compile(unfused)
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if loss == "ce" and options is not None:
        sides["pytorch_lce_chunked"] = lambda x, w, t: F.linear_cross_entropy(
            x, w, t, options=options()
        )
    if device == "cuda" and loss == "ce":
        for name, fn in (("liger", _liger()), ("cce", _cce())):
            if fn is not None:
                sides[name] = fn
    return sides


def make_inputs(n: int, h: int, k: int, dtype: torch.dtype, device: str, loss: str = "ce"):
    g = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(n, h, generator=g, device=device) * 0.5).to(dtype).requires_grad_()
    w = (torch.randn(k, h, generator=g, device=device) / h**0.5 * 2).to(dtype).requires_grad_()
    kind = registry.loss_kind(registry.parse_spec(loss)[0])
    if kind == "binary":
        t = (torch.rand(n, k, generator=g, device=device) < 1e-3).to(dtype)
    elif kind == "distillation":
        t = torch.randn(n, k, generator=g, device=device).to(dtype)
    else:
        t = torch.randint(0, k, (n,), generator=g, device=device)
    return x, w, t


def prepare_step(fn: Callable, x, w, t) -> Callable[[], Callable[[], None]]:
    def prepare():
        x.grad = w.grad = None

        def step():
            fn(x, w, t).backward()

        return step

    return prepare


# ---------------------------------------------------------------------------- CPU


def cpu_child_time(iters: int, chunks: list[int], quick: bool, loss: str) -> dict:
    torch.set_num_threads(2)
    x, w, t = make_inputs(*cpu_shape(quick, loss), torch.float32, "cpu", loss)
    functions = cpu_loss_functions(loss, chunks)
    sides = {s: prepare_step(fn, x, w, t) for s, fn in functions.items()}
    times = _measure.interleaved_times(sides, iters, warmup=1)
    return {"times": times, "env": _measure.environment()}


def cpu_child_memory(side: str, chunks: list[int], quick: bool, loss: str) -> dict:
    torch.set_num_threads(2)
    x, w, t = make_inputs(*cpu_shape(quick, loss), torch.float32, "cpu", loss)
    prepare = prepare_step(cpu_loss_functions(loss, chunks)[side], x, w, t)
    prepare()()  # warm-up: thread pool, allocator, code paths; its .grad is dropped next
    step = prepare()
    return {"peak_extra_bytes": _measure.peak_extra_bytes(step)}


def cpu_shape(quick: bool, loss: str) -> tuple[int, int, int]:
    if quick:
        return (512, 256, 4000)
    return CPU_SHAPE if loss == "ce" else CPU_OTHER_LOSS_SHAPE


def run_cpu(args: argparse.Namespace) -> None:
    me = str(Path(__file__).resolve())
    common = ["--chunks", *map(str, args.chunks), "--loss", args.loss]
    common += ["--quick"] if args.quick else []
    timed = _measure.run_child(me, ["--child", "time", str(args.iters), *common], {})
    memory = {}
    for side in timed["times"]:
        env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
        child = _measure.run_child(me, ["--child", "memory", side, *common], env)
        memory[side] = child["peak_extra_bytes"]
    n, h, k = cpu_shape(args.quick, args.loss)
    record = {
        "loss": args.loss,
        "shape": {"n": n, "hidden": h, "classes": k},
        "dtype": "float32",
        "iterations_after_warmup": args.iters,
        "times_s": timed["times"],
        "median_s": {s: statistics.median(v) for s, v in timed["times"].items()},
        "peak_extra_bytes": memory,
        "environment": timed["env"],
        "note": "2 shared cores; other jobs ran at the same time: read medians only",
    }
    print_cpu(record)
    default = "linear_cpu.json" if args.loss == "ce" else f"linear_cpu_{args.loss}.json"
    out = Path(args.out or RESULTS / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


def print_cpu(rec: dict) -> None:
    med, mem = rec["median_s"], rec["peak_extra_bytes"]
    ref = "pytorch_lce_chunked" if "pytorch_lce_chunked" in med else "pytorch_unfused"
    ref_t, ref_m = med[ref], mem[ref]
    s, loss = rec["shape"], rec["loss"]
    print(f"CPU fused linear + {loss} {s['n']}x{s['hidden']} -> {s['classes']}, float32, 2 threads")
    print(f"{'side':24s} {'median s':>9s} {'vs torch':>9s} {'peak GiB':>9s} {'vs torch':>9s}")
    for side in med:
        print(
            f"{side:24s} {med[side]:9.2f} {med[side] / ref_t:9.2f} "
            f"{mem[side] / GIB:9.3f} {mem[side] / ref_m:9.2f}"
        )


# ---------------------------------------------------------------------------- CUDA


def cuda_time(prepare: Callable[[], Callable[[], None]]) -> float:
    step = prepare()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def cuda_memory(prepare: Callable[[], Callable[[], None]]) -> int:
    step = prepare()  # drops the previous .grad first
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def matmuls_only(x, w) -> Callable[[], Callable[[], None]]:
    """The three products of the fused step, bf16, no loss: the floor of every side."""

    def prepare():
        def step():
            with torch.no_grad():
                logits = x @ w.T
                logits @ w
                logits.T @ x

        return step

    return prepare


def run_cuda_case(n: int, h: int, k: int, loss: str, iters: int, only: list[str]) -> dict:
    x, w, t = make_inputs(n, h, k, torch.bfloat16, "cuda")
    sides = {s: prepare_step(fn, x, w, t) for s, fn in loss_functions("cuda", loss, []).items()}
    sides["matmuls_only"] = matmuls_only(x, w)
    if only:
        sides = {s: p for s, p in sides.items() if s in only}
    errors = {}
    for name, prepare in list(sides.items()):
        try:
            for _ in range(3):
                cuda_time(prepare)
        except Exception as exc:  # a side that cannot run here is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            del sides[name]
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(iters):
        for name, prepare in sides.items():
            times[name].append(cuda_time(prepare))
    memory = {name: cuda_memory(prepare) for name, prepare in sides.items()}
    x.grad = w.grad = None
    return {
        "shape": {"n": n, "hidden": h, "classes": k},
        "loss": loss,
        "dtype": "bfloat16",
        "times_ms": times,
        "median_ms": {s: statistics.median(v) for s, v in times.items()},
        "peak_extra_bytes": memory,
        "errors": errors,
    }


def run_cuda(args: argparse.Namespace) -> None:
    shapes = [(1024, 512, 8192)] if args.quick else GPU_SHAPES
    records = []
    for n, h, k in shapes:
        for loss in ("ce", "focal"):
            rec = run_cuda_case(n, h, k, loss, args.iters, args.only)
            records.append(rec)
            print_cuda(rec)
            torch.cuda.empty_cache()
    env = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "iterations": args.iters,
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    from crossent import kernels

    env["crossent_backend"] = kernels.get_backend()
    env["triton_kernel_used"] = kernels.triton_available()
    out = Path(args.out or RESULTS / "linear_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "records": records}, indent=1))
    print(f"wrote {out}")


def print_cuda(rec: dict) -> None:
    s = rec["shape"]
    med, mem = rec["median_ms"], rec["peak_extra_bytes"]
    ref = "pytorch_unfused"
    print(f"\n{rec['loss']} {s['n']}x{s['hidden']} -> {s['classes']} bf16")
    head = ("side", "median ms", "vs unfused", "peak GiB", "vs unfused")
    print(f"{head[0]:22s} {head[1]:>10s} {head[2]:>10s} {head[3]:>9s} {head[4]:>10s}")
    for side in med:
        print(
            f"{side:22s} {med[side]:10.2f} {med[side] / med[ref]:10.2f} "
            f"{mem[side] / GIB:9.3f} {mem[side] / max(mem[ref], 1):10.2f}"
        )
    for side, err in rec["errors"].items():
        print(f"{side:22s} not run: {err}")


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per side")
    parser.add_argument("--chunks", type=int, nargs="*", default=[256], help="CPU extra chunks")
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    parser.add_argument("--loss", default="ce", help="CPU: the registry loss (default ce)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="*", default=[], help="CUDA: run only these sides")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, arg = args.child
        if kind == "time":
            result = cpu_child_time(int(arg), args.chunks, args.quick, args.loss)
        else:
            result = cpu_child_memory(arg, args.chunks, args.quick, args.loss)
        print(json.dumps(result))
        return
    if args.device == "cuda":
        args.iters = args.iters or 20
        run_cuda(args)
    else:
        args.iters = args.iters or 5
        run_cpu(args)


if __name__ == "__main__":
    main()
