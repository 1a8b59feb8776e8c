"""GPU benchmark of the kernel template (issue 11, item 4): crossent against PyTorch,
``torch.compile``d PyTorch and, when installed, Liger-Kernel.

Forward + backward, bf16 logits, mean reduction, CUDA events, median over interleaved
iterations after warm-up; peak extra memory from ``torch.cuda.max_memory_allocated`` over
what the inputs already hold. Logits are leaves and the gradient is taken with
``torch.autograd.grad`` (nothing accumulates into ``.grad``). A side that writes its gradient
into the logits (crossent ``inplace_backward=True``, Liger) is given a fresh copy of the
logits inside the timed region; ``kernel alone`` times crossent's in-place launch on a buffer
it may overwrite (refreshed outside the timed region) next to ``clone`` of the logits.
crossent runs with ``set_validation(False)`` and ``set_probability_warning(False)`` (the
switches for hot loops: no host synchronisation at all).

Cut Cross-Entropy only offers the fused linear + loss, benchmarked with the fused linear rows.

    python benchmarks/bench_gpu.py                      # all workloads, JSON to results/gpu.json
    python benchmarks/bench_gpu.py --shapes 8192x128256 --losses ce,focal --no-compile
    python benchmarks/bench_gpu.py --tune               # tile shapes of the kernel alone
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import crossent
from crossent import kernels
from crossent.engine import term_loss
from crossent.kernels import _launch
from crossent.kernels.ops import loss_and_grad_inplace
from crossent.terms import CrossEntropyTerm, FocalTerm, ForwardKLTerm, LqTerm, Poly1Term

SHAPES = [(4096, 32000), (8192, 128256), (16384, 256000)]
LOSSES = ["ce", "ce_smooth", "focal", "gce", "poly1", "forward_kl"]
GAMMA, Q, EPS, SMOOTH = 2.0, 0.7, 1.0, 0.1
GIB = 2**30


# --------------------------------------------------------------------------- the sides
def torch_loss(name: str) -> Callable:
    """The PyTorch formulation of each workload (the naive formula where PyTorch has none)."""

    def ce(z, t):
        return F.cross_entropy(z, t)

    def ce_smooth(z, t):
        return F.cross_entropy(z, t, label_smoothing=SMOOTH)

    def focal(z, t):
        logpt = torch.log_softmax(z.float(), dim=1).gather(1, t[:, None]).squeeze(1)
        return (-((1 - logpt.exp()) ** GAMMA) * logpt).mean()

    def gce(z, t):
        pt = torch.softmax(z.float(), dim=1).gather(1, t[:, None]).squeeze(1)
        return ((1 - pt**Q) / Q).mean()

    def poly1(z, t):
        ce = F.cross_entropy(z.float(), t, reduction="none")
        return (ce + EPS * (1 - torch.exp(-ce))).mean()

    def forward_kl(z, t):
        logp = torch.log_softmax(z.float(), dim=1)
        return F.kl_div(logp, t, log_target=True, reduction="batchmean")

    return locals()[name]


def crossent_loss(name: str, inplace: bool = False) -> Callable:
    """crossent's public functions (forward KL through the engine call with teacher log-probs)."""
    kw = {"inplace_backward": inplace}
    if name == "ce":
        return lambda z, t: crossent.cross_entropy(z, t, **kw)
    if name == "ce_smooth":
        return lambda z, t: crossent.cross_entropy(z, t, label_smoothing=SMOOTH, **kw)
    term = {
        "focal": FocalTerm(GAMMA),
        "gce": LqTerm(Q),
        "poly1": Poly1Term(EPS),
        "forward_kl": ForwardKLTerm(),
    }[name]
    return lambda z, t: term_loss(z, t, term, **kw)


def liger_loss(name: str) -> Callable | None:
    """Liger-Kernel's function for the workload, or ``None`` (not installed / not offered)."""
    if importlib.util.find_spec("liger_kernel") is None:
        return None
    from liger_kernel.transformers.functional import liger_cross_entropy, liger_kl_div

    if name == "ce":
        return lambda z, t: liger_cross_entropy(z, t)
    if name == "ce_smooth":
        return lambda z, t: liger_cross_entropy(z, t, label_smoothing=SMOOTH)
    if name == "forward_kl":
        return lambda z, t: liger_kl_div(torch.log_softmax(z, 1), t, log_target=True)
    return None


# --------------------------------------------------------------------------- measurement
def make_inputs(n: int, k: int, name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    z = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g)
    if name == "forward_kl":
        teacher = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g)
        return z, torch.log_softmax(teacher.float(), dim=1).to(torch.bfloat16)
    return z, torch.randint(0, k, (n,), device="cuda", generator=g)


def make_step(fn: Callable, base: torch.Tensor, target: torch.Tensor, copy: bool) -> Callable:
    """One forward + backward; ``copy`` gives it a fresh copy of the logits (timed)."""
    leaf = base.detach().requires_grad_()

    def step():
        x = base.detach().clone().requires_grad_() if copy else leaf
        loss = fn(x, target)
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    return step


def kernel_alone_step(base: torch.Tensor, target: torch.Tensor, buf: torch.Tensor) -> Callable:
    term, scale = CrossEntropyTerm(), 1.0 / base.shape[0]

    def prepare():
        buf.copy_(base)

    def step():
        loss_and_grad_inplace(buf, target, term, grad_scale=scale)

    return prepare, step


def time_sides(sides: dict, iters: int, warmup: int) -> dict:
    """Interleaved CUDA-event timing and peak extra memory of each side."""
    out = {}
    for name, (prepare, step) in sides.items():
        try:
            for _ in range(warmup):
                prepare()
                step()
            torch.cuda.synchronize()
            prepare()
            torch.cuda.synchronize()
            base_mem = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base_mem
            out[name] = {"times_ms": [], "peak_extra_gib": peak / GIB}
        except torch.OutOfMemoryError:
            out[name] = {"error": "out of memory"}
        torch.cuda.empty_cache()
    live = [n for n in sides if "error" not in out[n]]
    for _ in range(iters):
        for name in live:
            prepare, step = sides[name]
            prepare()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            out[name]["times_ms"].append(start.elapsed_time(end))
    for name in live:
        out[name]["median_ms"] = statistics.median(out[name]["times_ms"])
    return out


def no_prepare() -> None:
    return None


def bench_workload(n: int, k: int, name: str, args: argparse.Namespace) -> dict:
    base, target = make_inputs(n, k, name)
    sides: dict[str, tuple[Callable, Callable]] = {
        "pytorch": (no_prepare, make_step(torch_loss(name), base, target, copy=False)),
        "crossent": (no_prepare, make_step(crossent_loss(name), base, target, copy=False)),
        "crossent_inplace": (
            no_prepare,
            make_step(crossent_loss(name, inplace=True), base, target, copy=True),
        ),
    }
    if args.compile and name in args.compile_losses:
        compiled = torch.compile(torch_loss(name), dynamic=False)
        sides["torch_compile"] = (no_prepare, make_step(compiled, base, target, copy=False))
    liger = liger_loss(name)
    if liger is not None:
        sides["liger"] = (no_prepare, make_step(liger, base, target, copy=name != "forward_kl"))
    if name == "ce":
        buf = torch.empty_like(base)
        sides["kernel_alone"] = kernel_alone_step(base, target, buf)
        sides["clone"] = (no_prepare, lambda: base.clone())
    return time_sides(sides, args.iters, args.warmup)


# --------------------------------------------------------------------------- tuning
TUNE_CASES = {  # path -> (loss name, keyword arguments of loss_and_grad_inplace)
    "fast": ("ce", {}),
    "linear": ("ce", {"label_smoothing": SMOOTH}),
    "soft": ("forward_kl", {}),
}


def tune_configs(path: str) -> list[_launch.TileConfig]:
    """Candidate tile shapes (the best of earlier sweeps on an H100, see docs/gpu.md)."""
    cfg = _launch.TileConfig
    if path == "fast":
        return [
            cfg(False, 1, 16384, 32),
            cfg(False, 1, 16384, 32, reverse=False),
            cfg(False, 1, 16384, 32, reverse=False, lane=True),
            cfg(False, 1, 16384, 32, persistent=True),
            cfg(False, 1, 8192, 32),
            cfg(False, 1, 4096, 16),
        ]
    return [
        cfg(False, 1, 8192, 32),
        cfg(False, 1, 8192, 32, reverse=False),
        cfg(False, 1, 8192, 32, lane=True),
        cfg(False, 1, 8192, 32, persistent=True),
        cfg(False, 1, 4096, 16),
    ]


def with_config(cfg: _launch.TileConfig, fn: Callable) -> None:
    saved = _launch.tile_config
    _launch.tile_config = lambda *a: cfg
    try:
        fn()
    finally:
        _launch.tile_config = saved


def tune(args: argparse.Namespace) -> dict:
    """The kernel alone (in place) for each tile shape and path; the best kept per K."""
    results, best = {}, {}
    for n, k in args.shapes:
        for path, (name, kw) in TUNE_CASES.items():
            base, target = make_inputs(n, k, name)
            term = ForwardKLTerm() if name == "forward_kl" else CrossEntropyTerm()
            buf = torch.empty_like(base)
            configs = {repr(c)[10:]: c for c in tune_configs(path)}
            sides = {}
            for label, cfg in configs.items():

                def step(cfg=cfg, term=term, kw=kw, target=target, buf=buf, n=n):
                    with_config(
                        cfg,
                        lambda: loss_and_grad_inplace(buf, target, term, grad_scale=1 / n, **kw),
                    )

                sides[label] = (lambda base=base, buf=buf: buf.copy_(base), step)
            if path == "fast":
                sides["clone"] = (no_prepare, lambda base=base: base.clone())
            res = time_sides(sides, args.iters, args.warmup)
            results[f"{path} {n}x{k}"] = res
            ranked = sorted(res.items(), key=lambda kv: kv[1].get("median_ms", 1e9))
            for label, r in ranked:
                print(f"{path:6s} {n}x{k} {r.get('median_ms', float('nan')):8.3f} ms  {label}")
            winner = next(label for label, _ in ranked if label in configs)
            best.setdefault(path, {})[str(k)] = dataclasses.asdict(configs[winner])
            sides.clear()
            torch.cuda.empty_cache()
    results["best"] = best
    return results


def use_configs(path: str) -> None:
    """Run the benchmark with the tile shapes a ``--tune`` run found best (per path and K)."""
    best = json.loads(Path(path).read_text())["tune"]["best"]
    default = _launch.tile_config

    def chosen(k: int, p: int, soft: bool = False) -> _launch.TileConfig:
        name = "fast" if p == _launch.PATH_FAST else ("soft" if soft else "linear")
        if p != _launch.PATH_FULL and str(k) in best.get(name, {}):
            return _launch.TileConfig(**best[name][str(k)])
        return default(k, p, soft)

    _launch.tile_config = chosen


# --------------------------------------------------------------------------- main
def environment() -> dict:
    env = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "crossent": crossent.__version__,
    }
    for pkg in ("triton", "liger_kernel", "cut_cross_entropy"):
        try:
            from importlib.metadata import version

            env[pkg] = version(pkg.replace("_", "-"))
        except Exception:  # not installed
            env[pkg] = None
    return env


def print_table(rows: list[dict]) -> None:
    sides = [
        "crossent",
        "crossent_inplace",
        "pytorch",
        "torch_compile",
        "liger",
        "kernel_alone",
        "clone",
    ]
    print("\n| workload | " + " | ".join(sides) + " |")
    print("|---|" + "---|" * len(sides))
    for row in rows:
        cells = []
        for side in sides:
            r = row["results"].get(side)
            if r is None:
                cells.append("—")
            elif "error" in r:
                cells.append(r["error"])
            else:
                cells.append(f"{r['median_ms']:.2f} ms, {r['peak_extra_gib']:.2f} GiB")
        print(f"| {row['loss']} ({row['n']}, {row['k']}) | " + " | ".join(cells) + " |")


def write(out: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES))
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--compile-losses", default=",".join(LOSSES))
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tune", action="store_true")
    p.add_argument("--configs", help="tile shapes from a --tune run's JSON")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = p.parse_args(argv)
    args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    args.losses = args.losses.split(",")
    args.compile_losses = args.compile_losses.split(",")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        sys.exit(
            "bench_gpu.py needs a CUDA device (the CPU fused-linear case is in its own script)"
        )
    crossent.set_validation(False)
    crossent.set_probability_warning(False)
    kernels.set_backend("triton")
    if args.configs:
        use_configs(args.configs)
    out = {"environment": environment(), "settings": {"iters": args.iters, "warmup": args.warmup}}
    if args.tune:
        out["tune"] = tune(args)
    else:
        rows = []
        for n, k in args.shapes:
            for name in args.losses:
                t0 = time.perf_counter()
                res = bench_workload(n, k, name, args)
                rows.append({"loss": name, "n": n, "k": k, "results": res})
                print_table(rows[-1:])
                print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
                out["rows"] = rows
                write(out, args.out)  # after every workload: a cut-off run keeps what it did
        print_table(rows)
    write(out, args.out)
    print(f"\nwrote {args.out}; environment: {out['environment']}")


if __name__ == "__main__":
    main()
