"""Shared measurement helpers for the CPU benchmarks (docs/design.md, "How we know it works").

* time: interleaved sides, median of at least 10 iterations after warm-up, same process;
* peak extra memory: each side in its own process with ``MALLOC_MMAP_THRESHOLD_=131072``
  (freed tensors go back to the system), the peak reset by writing ``5`` to
  ``/proc/self/clear_refs``, one iteration, then ``VmHWM - VmRSS before``;
* shared cores: :func:`busy_core` keeps a CPU-bound helper process pinned to one core (a busy
  loop, as a data-loader worker is) while both sides are timed, interleaved as above;
* every timing records the load average (``os.getloadavg``) before and after it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_bytes(step: Callable[[], None]) -> int:
    """Run ``step`` once and return the peak resident memory it added, in bytes."""
    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    return (status_kib("VmHWM") - before) * 1024


def interleaved_times(
    sides: dict[str, Callable[[], Callable[[], None]]], iters: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Time each side's step ``iters`` times, interleaving sides; ``sides`` map a name to a
    function that prepares one iteration (untimed) and returns the timed step."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(warmup + iters):
        for name, prepare in sides.items():
            step = prepare()
            t0 = time.perf_counter()
            step()
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(elapsed)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def environment() -> dict[str, object]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", ""),
        "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", ""),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


_BUSY_LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextmanager
def busy_core(cpu: int = 0) -> Iterator[None]:
    """A CPU-bound helper process pinned to core ``cpu`` (a busy loop) while the block runs."""
    helper = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(cpu)])
    time.sleep(0.5)  # started and spinning before anything is timed
    try:
        yield
    finally:
        helper.kill()
        helper.wait()


def run_child(script: str, args: list[str], env_extra: dict[str, str]) -> dict:
    """Run ``python script args`` with extra environment; it prints one JSON line last."""
    env = dict(os.environ)
    env.update(env_extra)
    load_before = [round(x, 2) for x in os.getloadavg()]
    out = subprocess.run(
        [sys.executable, script, *args], env=env, check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["loadavg_before_after"] = [load_before, [round(x, 2) for x in os.getloadavg()]]
    return result


def timing_fields(timed: dict, memory: dict[str, int]) -> dict:
    """A result record's measured part: a timing child's output (``run_child`` of a child that
    printed ``interleaved_times`` as ``times`` and ``environment()`` as ``env``) and each side's
    peak extra bytes."""
    return {
        "times_s": timed["times"],
        "median_s": {side: median(times) for side, times in timed["times"].items()},
        "peak_extra_bytes": memory,
        "loadavg_before_after": timed["loadavg_before_after"],
        "environment": timed["env"],
    }
