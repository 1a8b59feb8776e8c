"""Run a study: claim runs from the store, train them on any executor, store the results.

The runner (the *driver*) is the only process that writes the store. Workers run
:func:`execute_run`, which never raises and returns a plain dict (metrics, history, ``.npz``
bytes of the predictions, or the traceback of a failure), so any
:class:`concurrent.futures.Executor` works: the default process pool with ``workers``
processes (:class:`crossent.study.pool.WorkerPool`), a thread pool, or a cluster named by
an executor string (``"dask:tcp://host:8786"``, ``"ray:local:4"``, see
:mod:`crossent.study.executors`). Each worker uses ``threads`` PyTorch threads
(default ``cores // workers`` in the process pool, 1 on a cluster).

Re-running a study skips finished runs; failed runs are kept with their traceback and run
again only with ``retry_failed=True``. Claims (see :mod:`crossent.study.store`) keep two
runners on one store from training the same run; the driver renews its leases while it
waits. When a worker of the default pool dies (the out-of-memory killer's SIGKILL), only the
run it was training is stored as failed; the other runs in flight go back to pending and a
fresh pool goes on. Every stored run records the executor, its worker count and the
threads it ran with.

Example:
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from crossent.study import load_preset, run_study
    >>> with ThreadPoolExecutor(1) as pool:                                  # doctest: +SKIP
    ...     summary = run_study(load_preset("quick"), "runs/quick.db", executor=pool)
    >>> summary.finished == summary.total                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from crossent.core.checks import fail
from crossent.study.config import StudyConfig
from crossent.study.executors import (
    Backend,
    ExecutorSpec,
    check_reachable,
    open_executor,
    parse_executor,
)
from crossent.study.grid import describe_run, expand
from crossent.study.owners import owner_token
from crossent.study.pool import WorkerPool
from crossent.study.preflight import preflight
from crossent.study.store import Store, StoreError, pack_arrays

#: Seconds a claim stays valid without renewal; the driver renews every quarter of it.
LEASE_SECONDS = 120.0

#: Pool breaks in a row, with no run finished in between and no run to blame, after which
#: the runs in flight are charged anyway (a worker that dies before it starts any run).
MAX_BLAMELESS_BREAKS = 3


def _environment(threads: int) -> dict[str, Any]:
    import torch

    from crossent import __version__

    return {
        "crossent": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "threads": threads,
    }


def execute_run(config: dict[str, Any], threads: int = 1) -> dict[str, Any]:
    """Train one run in a worker and return a plain result; never raises.

    Args:
        config: a resolved run config.
        threads: PyTorch intra-op threads for this run.

    Returns:
        ``{"status": "finished", "metrics", "history", "arrays" (npz bytes), ...}`` or
        ``{"status": "failed", "error": traceback text, ...}``, both with ``started_at``,
        ``finished_at``, ``duration_s`` and ``environment``.
    """
    import torch

    from crossent.study.train import train_run

    torch.set_num_threads(threads)
    started, clock = time.time(), time.perf_counter()
    try:
        result = train_run(config)
        out: dict[str, Any] = {
            "status": "finished",
            "metrics": {**result["metrics"], "class_names": result["class_names"]},
            "history": result["history"],
            "arrays": pack_arrays(result["arrays"]),
        }
    except Exception:  # a failing run is a result: its traceback is stored
        out = {"status": "failed", "error": traceback.format_exc()}
    out["started_at"] = started
    out["finished_at"] = time.time()
    out["duration_s"] = time.perf_counter() - clock
    out["environment"] = _environment(threads)
    return out


@dataclass
class StudySummary:
    """What a call of :func:`run_study` did."""

    study: str
    total: int
    finished: int
    failed: int
    ran: int
    skipped: int
    elsewhere: int
    duration_s: float


def _summary_line(config: dict[str, Any], result: dict[str, Any]) -> str:
    text = describe_run(config)
    if result["status"] != "finished":
        last = (result.get("error") or "").strip().splitlines() or ["unknown error"]
        return f"[red]{text}: failed ({last[-1][:80]})[/red]"
    mtr = result["metrics"]
    f1 = f"entity F1 {mtr['entity_f1']:.3f}" if "entity_f1" in mtr else f"F1 {mtr['macro_f1']:.3f}"
    return f"{text}: acc {mtr['accuracy']:.3f} {f1} ECE {mtr['ece']:.3f}"


def _failure(text: str) -> dict[str, Any]:
    now = time.time()
    return {"status": "failed", "error": text, "started_at": now, "finished_at": now}


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _broken(future: Future) -> bool:
    """Whether a future ended because the process pool broke (or was cancelled by it)."""
    return future.cancelled() or isinstance(future.exception(), BrokenProcessPool)


class _Driver:
    """The claim - submit - store loop of one :func:`run_study` call."""

    def __init__(self, store: Store, study: str, backend: Backend, threads: int) -> None:
        self.store = store
        self.study = study
        self.owner = owner_token()
        self.backend = backend
        self.pool = WorkerPool(backend.workers, self.owner) if backend.executor is None else None
        self.threads = threads
        self.in_flight: dict[Future, tuple[str, dict[str, Any]]] = {}
        self.ran = 0
        self.blameless_breaks = 0

    def _submit(self, rid: str, config: dict[str, Any]) -> Future:
        if self.pool is not None:
            return self.pool.submit(rid, config, self.threads)
        assert self.backend.executor is not None
        return self.backend.executor.submit(execute_run, config, self.threads)

    def fill(self) -> None:
        """Claim runs until ``2 * workers`` are submitted."""
        room = 2 * self.backend.workers - len(self.in_flight)
        if room <= 0:
            return
        for rid, config in self.store.claim(
            self.study, self.owner, limit=room, lease_s=LEASE_SECONDS
        ):
            self.in_flight[self._submit(rid, config)] = (rid, config)

    def _store(
        self, rid: str, config: dict[str, Any], result: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Store a result with where it ran: executor, its worker count, threads."""
        result["environment"] = {
            **(result.get("environment") or {}),
            "executor": self.backend.name,
            "workers": self.backend.workers,
            "threads": self.threads,
        }
        if self.store.complete(rid, self.owner, result):
            self.ran += 1
        return config, result

    def collect(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Wait for at least one run (renewing leases meanwhile); store and return results."""
        done, _ = wait(list(self.in_flight), timeout=LEASE_SECONDS / 4, return_when=FIRST_COMPLETED)
        self.store.renew(
            [rid for rid, _ in self.in_flight.values()], self.owner, lease_s=LEASE_SECONDS
        )
        if self.pool is not None and any(_broken(future) for future in done):
            return self._recover()
        out, interrupt = [], None
        for future in done:
            try:
                result = future.result()
            except Exception as error:  # a cluster's error (KilledWorker, WorkerCrashedError)
                result = _failure(_traceback(error))
            except BaseException as stop:  # Ctrl-C in a thread: store the others' results first
                interrupt = stop
                continue
            rid, config = self.in_flight.pop(future)
            if self.pool is not None:
                self.pool.forget(rid)
            out.append(self._store(rid, config, result))
            self.blameless_breaks = 0
        if interrupt is not None:
            raise interrupt
        return out

    def _recover(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """A pool worker died: charge its run, give the other runs back, start a fresh pool."""
        assert self.pool is not None
        self.pool.shutdown(wait=True)  # every future in flight is resolved after this
        flight, self.in_flight = self.in_flight, {}
        broken = [rid for future, (rid, _) in flight.items() if _broken(future)]
        blamed = self.pool.casualties(broken)
        if blamed is None:
            self.blameless_breaks += 1
            if self.blameless_breaks >= MAX_BLAMELESS_BREAKS:
                text = f"BrokenProcessPool: the worker pool broke {self.blameless_breaks} times"
                blamed = dict.fromkeys(broken, f"{text} in a row without a run to blame")
        out = []
        for future, (rid, config) in flight.items():
            if not _broken(future):
                out.append(self._store(rid, config, future.result()))
            elif blamed and rid in blamed:
                out.append(self._store(rid, config, _failure(blamed[rid])))
        self.store.release(self.owner, [rid for rid in broken if not blamed or rid not in blamed])
        self.pool = WorkerPool(self.backend.workers, self.owner)
        return out

    def close(self, interrupted: bool) -> None:
        if interrupted:
            for future in self.in_flight:
                future.cancel()  # runs not started yet; their claims are released below
            # When the store itself failed (a full disk) this fails too: the claims then
            # lapse with this process, and the first error is the one to report.
            with contextlib.suppress(StoreError):
                self.store.release(self.owner)
        if self.pool is not None:
            self.pool.shutdown(wait=not interrupted)


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[latest]}"),
        console=console,
        disable=not enabled,
    )


def _spec(executor: Executor | str | None, workers: int) -> ExecutorSpec | None:
    """The executor string's spec (``process:workers`` by default); ``None`` for an object."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise fail("workers", ">= 1", workers)
    if executor is None:
        return ExecutorSpec("process", None, workers)
    return parse_executor(executor) if isinstance(executor, str) else None


@contextlib.contextmanager
def _backend(
    executor: Executor | str | None, spec: ExecutorSpec | None, workers: int
) -> Iterator[Backend]:
    if spec is None:
        assert isinstance(executor, Executor)
        yield Backend(executor, type(executor).__name__, workers)
    else:
        with open_executor(spec) as backend:
            yield backend


def _threads(threads: int | None, spec: ExecutorSpec | None, workers: int) -> int:
    """PyTorch threads per run: as given, 1 on a cluster, else ``cores // workers``."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise fail("threads", ">= 1", threads)
        return threads
    if spec is not None and spec.kind != "process":
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


def run_study(
    config: StudyConfig,
    store: Store | str | Path,
    *,
    executor: Executor | str | None = None,
    workers: int = 1,
    threads: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> StudySummary:
    """Run every unfinished run of a study and store the results.

    Args:
        config: the validated study (:func:`crossent.study.load_config` or ``load_preset``).
        store: a :class:`Store` or the path of its SQLite file.
        executor: where runs execute: an executor string (``"process:4"``,
            ``"dask:tcp://host:8786"``, ``"dask:local:2"``, ``"ray:auto"``, ``"ray:local:2"``;
            see :mod:`crossent.study.executors`), any ``concurrent.futures.Executor``, or
            ``None`` for a process pool of ``workers``.
        workers: the default pool's size; with an ``Executor`` object, how many runs it
            executes at once (``2 * workers`` are kept submitted).
        threads: PyTorch threads per run; default 1 on Dask and Ray, else
            ``max(1, os.cpu_count() // workers)``.
        retry_failed: run failed runs again (otherwise they are kept and skipped).
        progress: show a progress bar with the ETA and the latest result.
        console: the rich console to draw on.

    Returns:
        A :class:`StudySummary`; ``elsewhere`` counts runs another runner still holds.

    Raises:
        StudyConfigError: before any run starts, when the data, model or a loss is invalid,
            or the data are a local file that a remote cluster's workers cannot see.
        StoreError: the store file cannot be used (damaged, read-only, a full disk).
        ExecutorError: the executor is not installed, unreachable or has no workers.
    """
    start = time.perf_counter()
    spec = _spec(executor, workers)
    if spec is not None:
        check_reachable(config, spec)
    runs = expand(config)
    preflight(config, runs)
    own_store = not isinstance(store, Store)
    db = Store(store) if own_store else store
    try:
        db.register_study(config.name, config.to_dict(), runs, [describe_run(r) for r in runs])
        if retry_failed:
            db.reset_failed(config.name)
        before = {r["id"]: r["status"] for r in db.runs(config.name)}
        todo = sum(status in ("pending", "running") for status in before.values())
        ran = 0
        if todo:
            with _backend(executor, spec, workers) as backend:
                chosen = _threads(threads, spec, backend.workers)
                driver = _Driver(db, config.name, backend, chosen)
                _drive(driver, todo, config.name, console, progress)
                ran = driver.ran
        after = [r["status"] for r in db.runs(config.name)]
    finally:
        if own_store:
            db.close()
    return StudySummary(
        study=config.name,
        total=len(after),
        finished=after.count("finished"),
        failed=after.count("failed"),
        ran=ran,
        skipped=len(after) - todo,
        elsewhere=after.count("running") + after.count("pending"),
        duration_s=time.perf_counter() - start,
    )


def _drive(driver: _Driver, todo: int, name: str, console: Console | None, enabled: bool) -> None:
    interrupted = True
    try:
        with _progress(console, enabled) as bar:
            task = bar.add_task(name, total=todo, latest="")
            driver.fill()
            while driver.in_flight:
                for config, result in driver.collect():
                    bar.update(task, advance=1, latest=_summary_line(config, result))
                driver.fill()
        interrupted = False
    finally:
        driver.close(interrupted)
