"""ECE and MCE of 10 million predictions with 10 classes: crossent against torchmetrics (CPU).

Usage: ``python benchmarks/bench_calibration.py [--iters 10] [--n 10000000] [--quick]``

Probabilities are produced by an operation (a softmax of random logits), labels are random.
Sides, timed in the same process, interleaved, median after one warm-up round:

* ``torchmetrics``: ``multiclass_calibration_error`` twice (``norm="l1"`` and ``"max"``),
  default validation: the two calls a user makes for ECE and MCE;
* ``crossent_bins``: one :func:`crossent.calibration.calibration_bins` call (one pass), then
  ``bins.calibration_error("l1")`` and ``("max")`` from the per-bin arrays;
* ``crossent_meter``: one :class:`crossent.calibration.CalibrationMeter` update + compute
  (one pass; it also yields RMSCE, Brier, NLL and accuracy);
* ``crossent_calls``: :func:`expected_calibration_error` + :func:`maximum_calibration_error`
  (two passes, content checks on, as torchmetrics' default validation).

Peak extra memory: each side in its own process (docs/design.md, "How we know it works";
``_measure.py``).
Writes ``benchmarks/results/calibration.json`` with every iteration's time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_calibration_error

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
from crossent.calibration import (  # noqa: E402
    CalibrationMeter,
    calibration_bins,
    expected_calibration_error,
    maximum_calibration_error,
)

SIDES = ["torchmetrics", "crossent_bins", "crossent_meter", "crossent_calls"]
N_BINS = 15


def inputs(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(n, k, generator=g)
    return torch.softmax(logits, dim=1), torch.randint(0, k, (n,), generator=g)


def run_side(side: str, probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """ECE and MCE computed by one side."""
    if side == "torchmetrics":
        k = probs.shape[1]
        ece = multiclass_calibration_error(probs, labels, k, n_bins=N_BINS, norm="l1")
        mce = multiclass_calibration_error(probs, labels, k, n_bins=N_BINS, norm="max")
        return float(ece), float(mce)
    if side == "crossent_bins":
        bins = calibration_bins(probs, labels, n_bins=N_BINS)
        return float(bins.calibration_error("l1")), float(bins.calibration_error("max"))
    if side == "crossent_meter":
        meter = CalibrationMeter(N_BINS)
        meter.update(probs, labels)
        result = meter.compute()
        return result["ece"], result["mce"]
    ece = expected_calibration_error(probs, labels, n_bins=N_BINS)
    mce = maximum_calibration_error(probs, labels, n_bins=N_BINS)
    return float(ece), float(mce)


def child_memory(n: int, k: int, side: str) -> dict:
    probs, labels = inputs(n, k)
    run_side(side, probs[:1000], labels[:1000])  # warm-up: libraries, thread pool
    return {"peak_extra_bytes": _measure.peak_extra_bytes(lambda: run_side(side, probs, labels))}


def measure_times(n: int, k: int, iters: int) -> tuple[dict[str, list[float]], dict]:
    probs, labels = inputs(n, k)
    values = {side: run_side(side, probs, labels) for side in SIDES}
    sides = {side: (lambda s=side: lambda: run_side(s, probs, labels)) for side in SIDES}
    return _measure.interleaved_times(sides, iters, warmup=1), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1M rows, 3 iterations")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "calibration.json")
    )
    args = parser.parse_args()
    if args.child:
        n, k, side = args.child
        print(json.dumps(child_memory(int(n), int(k), side)))
        return
    n, iters = (1_000_000, 3) if args.quick else (args.n, args.iters)
    load_before = os.getloadavg()
    times, values = measure_times(n, args.k, iters)
    me = str(Path(__file__).resolve())
    memory = {
        side: _measure.run_child(
            me, ["--child", str(n), str(args.k), side], {"MALLOC_MMAP_THRESHOLD_": "131072"}
        )["peak_extra_bytes"]
        for side in SIDES
    }
    record = {
        "shape": [n, args.k],
        "n_bins": N_BINS,
        "times_s": times,
        "median_s": {side: _measure.median(t) for side, t in times.items()},
        "peak_extra_bytes": memory,
        "ece_mce": values,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "environment": _measure.environment(),
    }
    print_table(record)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


def print_table(record: dict) -> None:
    med, mem, values = record["median_s"], record["peak_extra_bytes"], record["ece_mce"]
    n, k = record["shape"]
    base_t, base_m = med["torchmetrics"], mem["torchmetrics"]
    print(f"ECE + MCE of ({n:,}, {k}) float32 probabilities, {record['n_bins']} bins")
    print(
        f"{'side':16s} {'median s':>9s} {'speed-up':>9s} {'peak MiB':>9s} {'memory':>7s}  ECE, MCE"
    )
    for side in SIDES:
        ece, mce = values[side]
        print(
            f"{side:16s} {med[side]:9.3f} {base_t / med[side]:8.2f}x "
            f"{mem[side] / 2**20:9.1f} {mem[side] / base_m:6.2f}x  {ece:.6f}, {mce:.6f}"
        )
    load = record["load_average"]
    print(f"load average before/after: {load['before'][0]:.2f} / {load['after'][0]:.2f}")


if __name__ == "__main__":
    main()
