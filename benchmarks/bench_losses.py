"""Forward+backward time and peak extra memory: the loss family vs its naive autograd forms.

Usage: ``python benchmarks/bench_losses.py [--iters 10] [--quick] [--no-shared]``

Pairs (float32, ``torch.set_num_threads(2)``, method of docs/design.md, "How we know it works"):

* focal (gamma=2) at (4096, 32000) vs the snippet ``ce = F.cross_entropy(reduction='none');
  p_t = exp(-ce); ((1 - p_t)**g * ce).mean()``;
* GCE (q=0.7) at (4096, 32000) vs ``softmax -> gather -> pow``;
* SGCE (q=0.7, eps=0.1, "others") at (4096, 32000) vs ``softmax -> pow -> smoothed one-hot``;
* sigmoid focal at (65536, 80) vs torchvision's formula (written out: torchvision is not a
  dependency);
* the asymmetric loss (gamma_pos=0, gamma_neg=4, clip=0.05) at (65536, 80) vs the paper's
  formula on ``p = sigmoid(z)`` (the authors' code without its ``eps`` clamp).

Logits are produced by an operation (``base.clone()`` of a leaf that requires grad, made
outside the measured region, as in a model). Times: interleaved sides, median of
``--iters`` iterations after 2 warm-up rounds, in one process. Peak extra memory: each side
in its own process with ``MALLOC_MMAP_THRESHOLD_=131072``. The machine is shared, so report
medians. Each case is timed twice: quiet, and ``shared`` while a CPU-bound helper process
pinned to core 0 (a busy loop, as a data-loader worker is) shares the cores with both sides
(``_measure.busy_core``); each row records the load average before and after its timing.
Writes ``benchmarks/results/losses.json`` (every iteration's time + environment).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
import crossent.functional as CF  # noqa: E402

GAMMA, Q, EPS = 2.0, 0.7, 0.1


def naive_focal(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(x, t, reduction="none")
    p_t = torch.exp(-ce)
    return ((1 - p_t) ** GAMMA * ce).mean()


def naive_gce(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    p_t = torch.softmax(x, dim=1).gather(1, t[:, None]).squeeze(1)
    return ((1 - p_t**Q) / Q).mean()


def naive_sgce(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    k = x.shape[1]
    target = torch.full_like(x, EPS / (k - 1)).scatter_(1, t[:, None], 1 - EPS)
    return (target * (1 - torch.softmax(x, dim=1) ** Q) / Q).sum(dim=1).mean()


def torchvision_sigmoid_focal(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # torchvision.ops.sigmoid_focal_loss(alpha=0.25, gamma=2, reduction="mean")
    p = torch.sigmoid(x)
    ce_loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** GAMMA)
    alpha_t = 0.25 * y + 0.75 * (1 - y)
    return (alpha_t * loss).mean()


def naive_asl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Ridnik et al. 2021: -y (1-p)^g+ log p - (1-y) p_m^g- log(1-p_m), p_m = max(p - clip, 0)
    p = torch.sigmoid(x)
    p_m = (p - 0.05).clamp(min=0)
    pos = y * (1 - p) ** 0.0 * torch.log(p)
    neg = (1 - y) * p_m**4.0 * torch.log(1 - p_m)
    return -(pos + neg).mean()


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CASES: dict[str, tuple[tuple[int, int], str, LossFn, LossFn]] = {
    "focal": (
        (4096, 32000),
        "index",
        lambda x, t: CF.focal_loss(x, t, gamma=GAMMA),
        naive_focal,
    ),
    "gce": (
        (4096, 32000),
        "index",
        lambda x, t: CF.generalized_cross_entropy(x, t, q=Q),
        naive_gce,
    ),
    "sgce": (
        (4096, 32000),
        "index",
        lambda x, t: CF.smooth_generalized_cross_entropy(x, t, q=Q, label_smoothing=EPS),
        naive_sgce,
    ),
    "sigmoid_focal": (
        (65536, 80),
        "binary",
        lambda x, y: CF.sigmoid_focal_loss(x, y, gamma=GAMMA, alpha=0.25),
        torchvision_sigmoid_focal,
    ),
    "asl": (
        (65536, 80),
        "binary",
        lambda x, y: CF.asymmetric_loss(x, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05),
        naive_asl,
    ),
}
QUICK_SHAPES = {"index": (256, 3000), "binary": (4096, 80)}
SIDES = ("naive", "crossent")


def inputs(shape: tuple[int, int], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(*shape, generator=g).requires_grad_()
    if kind == "index":
        target = torch.randint(0, shape[1], (shape[0],), generator=g)
    else:
        target = (torch.rand(*shape, generator=g) < 0.1).float()
    return base, target


def make_step(fn: LossFn, base: torch.Tensor, target: torch.Tensor):
    def prepare():
        base.grad = None
        logits = base.clone()  # made outside the measured region, as a model's output

        def step():
            fn(logits, target).backward()

        return step

    return prepare


def side_fn(case: str, side: str) -> LossFn:
    _, _, ours, naive = CASES[case]
    return ours if side == "crossent" else naive


def child_time(case: str, shape: tuple[int, int], iters: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    base, target = inputs(shape, CASES[case][1])
    sides = {s: make_step(side_fn(case, s), base, target) for s in SIDES}
    return {"times": _measure.interleaved_times(sides, iters), "env": _measure.environment()}


def child_memory(case: str, shape: tuple[int, int], side: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    base, target = inputs(shape, CASES[case][1])
    prepare = make_step(side_fn(case, side), base, target)
    prepare()()  # warm-up (allocator, thread pool)
    step = prepare()
    return {"peak_extra_bytes": _measure.peak_extra_bytes(step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (2 is the reference setting)"
    )
    parser.add_argument(
        "--no-shared", action="store_true", help="skip the rows timed beside a busy core"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "losses.json"))
    args = parser.parse_args()
    if args.child:
        kind, case, n, k, *rest = args.child
        shape = (int(n), int(k))
        if kind == "time":
            result = child_time(case, shape, int(rest[0]), args.threads)
        else:
            result = child_memory(case, shape, rest[0], args.threads)
        print(json.dumps(result))
        return
    me = str(Path(__file__).resolve())
    records = []
    print_header()
    for case in args.cases:
        shape, kind, _, _ = CASES[case]
        shape = QUICK_SHAPES[kind] if args.quick else shape
        dims = [str(shape[0]), str(shape[1])]
        threads = ["--threads", str(args.threads)]
        child = [*threads, "--child", "time", case, *dims, str(args.iters)]
        memory = {
            side: _measure.run_child(
                me,
                [*threads, "--child", "memory", case, *dims, side],
                {"MALLOC_MMAP_THRESHOLD_": "131072"},
            )["peak_extra_bytes"]
            for side in SIDES
        }
        timings = {"quiet": _measure.run_child(me, child, {})}
        if not args.no_shared:
            with _measure.busy_core(0):
                timings["shared"] = _measure.run_child(me, child, {})
        for condition, timed in timings.items():
            rec = {
                "case": case,
                "condition": condition,
                "shape": list(shape),
                "threads": args.threads,
                **_measure.timing_fields(timed, memory),
            }
            records.append(rec)
            print_row(rec)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(records, indent=1))
    print(f"wrote {args.out}")


def print_header() -> None:
    print(
        f"{'loss':14s} {'cores':6s} {'shape':>14s} | {'naive':>8s} {'crossent':>8s} "
        f"{'speed-up':>8s} | {'naive MiB':>9s} {'ours MiB':>8s} {'mem ratio':>9s} | load",
        flush=True,
    )


def print_row(rec: dict) -> None:
    med, mem = rec["median_s"], rec["peak_extra_bytes"]
    mib = 1024**2
    n, k = rec["shape"]
    load = rec["loadavg_before_after"]
    print(
        f"{rec['case']:14s} {rec['condition']:6s} {f'({n}, {k})':>14s} | "
        f"{med['naive']:7.3f}s {med['crossent']:7.3f}s "
        f"{med['naive'] / med['crossent']:7.2f}x | {mem['naive'] / mib:9.0f} "
        f"{mem['crossent'] / mib:8.0f} {mem['crossent'] / mem['naive']:8.2f}x | "
        f"{load[0][0]:.1f}->{load[1][0]:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
