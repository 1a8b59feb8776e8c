"""Launching gloo workers and comparing one rank's results with the single-process loss.

Every worker builds the same full float64 logits from a seed, keeps its own columns, runs the
vocabulary-parallel loss and compares the loss and its gradient slice with
``crossent.get_loss(...)`` on the full logits. Mismatches are collected and raised at the end,
all of them, from the worker (``torch.multiprocessing`` re-raises it in the test process).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from crossent.distributed import record_collectives

# The children are forked where the platform can: they inherit the imported torch and
# crossent (a spawned child imports them again, ~8 s each on the loaded 2-core CI machine,
# against ~0.2 s for a fork). Each child initialises its own gloo group after the fork.
_START = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def launch(worker: Callable[..., None], world: int, init_file: str, *args: object) -> None:
    """Run ``worker(rank, world, *args)`` on ``world`` gloo ranks (``file://`` rendezvous)."""
    mp.start_processes(
        _entry,
        args=(worker, world, init_file, args),
        nprocs=world,
        join=True,
        start_method=_START,
    )


def _entry(rank: int, worker: Callable[..., None], world: int, init_file: str, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        worker(rank, world, *args)
    finally:
        dist.destroy_process_group()


@dataclass
class Checker:
    """Compares results with references and records every mismatch and every collective."""

    rtol: float = 1e-10
    atol: float = 1e-12
    failures: list[str] = field(default_factory=list)
    cases: int = 0
    largest_reduce: int = 0  # the most elements one all-reduce carried
    backward_calls: int = 0  # collectives issued during backward (0 expected)

    def close(self, case: str, what: str, got: torch.Tensor, want: torch.Tensor) -> None:
        """Record a mismatch between ``got`` and ``want``."""
        if got.shape != want.shape:
            self.failures.append(f"{case}: {what} shape {tuple(got.shape)} != {tuple(want.shape)}")
        elif not torch.allclose(got.double(), want.double(), rtol=self.rtol, atol=self.atol):
            err = (got.double() - want.double()).abs().max().item()
            self.failures.append(f"{case}: {what} off by {err:.3g}")

    def run(
        self, case: str, call: Callable[[], torch.Tensor], reference: torch.Tensor
    ) -> torch.Tensor:
        """``call()`` with its collectives recorded; its loss checked; backward run with a
        random ``grad_output`` (the reference's backward gets the same). Returns it.
        """
        self.cases += 1
        with record_collectives() as calls:
            out = call()
        sizes = [t.bytes // t.dtype.itemsize for t in calls if t.kind == "all_reduce"]
        self.largest_reduce = max([self.largest_reduce, *sizes])
        self.close(case, "loss", out.detach(), reference.detach())
        gen = torch.Generator().manual_seed(self.cases)
        grad_output = torch.rand(reference.shape, generator=gen, dtype=reference.dtype) + 0.5
        if reference.requires_grad:
            reference.backward(grad_output)
        if out.requires_grad:
            with record_collectives() as calls:
                out.backward(grad_output.to(out.dtype))
            self.backward_calls += len(calls)
        return grad_output

    def raise_failures(self, rank: int) -> None:
        """Raise one ``AssertionError`` listing every mismatch of this rank."""
        if self.failures:
            head = f"rank {rank}: {len(self.failures)} mismatches in {self.cases} cases:\n"
            raise AssertionError(head + "\n".join(self.failures[:40]))


def columns(rank: int, widths: tuple[int, ...], starts: tuple[int, ...] | None = None) -> slice:
    """This rank's columns (consecutive in rank order unless ``starts`` is given)."""
    start = sum(widths[:rank]) if starts is None else starts[rank]
    return slice(start, start + widths[rank])


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A fresh leaf copy that requires grad."""
    return t.detach().clone().requires_grad_()
