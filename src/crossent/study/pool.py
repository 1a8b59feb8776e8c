"""The runner's own worker pool: warm worker processes, and who is to blame when one dies.

:class:`WorkerPool` is a :class:`~concurrent.futures.ProcessPoolExecutor` whose workers

* start from a fork server that imported the libraries once (:func:`worker_context`);
* exit within a second of the driver's death (:func:`exit_with_driver`);
* say which run they start, and their pid, before training it.

When a worker dies (SIGKILL from the out-of-memory killer, a native crash), the standard pool
fails every run in flight with ``BrokenProcessPool`` and terminates the other workers with
SIGTERM. :meth:`WorkerPool.casualties` tells the run whose worker died — the worker that
ended by anything but the pool's own SIGTERM — from the runs that were merely in the same
pool, so only that run is charged and the others can run again on a fresh pool.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from crossent.study.owners import owner_alive

#: What a worker imports, loaded once by the fork server: each worker then starts as a fork
#: of that warm process instead of importing PyTorch, scikit-learn and SciPy itself (the last
#: two are imported lazily by the data loaders and temperature scaling, ``torch._dynamo`` by
#: the first optimizer step). A module that fails to import is skipped.
WORKER_PRELOAD = (
    "crossent.study.runner",
    "crossent.study.train",
    "crossent.data",
    "crossent.calibration.metrics",
    "crossent.calibration.scaling",
    "sklearn.datasets",
    "torch._dynamo",
)

#: Where a pool worker reports ``(run id, pid)`` as it starts a run (set by the initializer).
_STARTED: Any = None


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the default worker pool: a fork server, else spawn.

    Never plain ``fork``: forking a process whose PyTorch thread pools already run can
    deadlock. The fork server is a fresh single-threaded process that only imports
    :data:`WORKER_PRELOAD`. As with ``spawn``, a script that calls
    :func:`~crossent.study.run_study` must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


def _watch_driver(owner: str, interval: float) -> None:
    while owner_alive(owner) is not False:
        time.sleep(interval)
    os._exit(1)  # the driver is gone: nobody will read this worker's result


def exit_with_driver(owner: str, interval: float = 1.0) -> None:
    """Pool initializer: end this worker within ``interval`` s of the driver's death.

    A killed driver (SIGKILL included) would otherwise leave its pool workers waiting on the
    task queue forever: each worker holds both ends of that pipe and so never sees EOF, and a
    fork server's workers keep the server alive too. ``owner`` is the driver's
    :func:`~crossent.study.store.owner_token` (pid and start time, so a reused pid is not
    mistaken for the driver).
    """
    threading.Thread(
        target=_watch_driver, args=(owner, interval), daemon=True, name="exit-with-driver"
    ).start()


def _init_worker(owner: str, started: Any) -> None:
    global _STARTED
    _STARTED = started
    exit_with_driver(owner)


def _pool_task(rid: str, config: dict[str, Any], threads: int) -> dict[str, Any]:
    from crossent.study.runner import execute_run

    _STARTED.put((rid, os.getpid()))  # one small message: an atomic pipe write
    return execute_run(config, threads)


class _TrackedContext:
    """A multiprocessing context that keeps the worker processes it starts (for exit codes)."""

    def __init__(self, base: multiprocessing.context.BaseContext) -> None:
        self._base = base
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def Process(self, *args: Any, **kwargs: Any) -> multiprocessing.process.BaseProcess:  # noqa: N802
        process = self._base.Process(*args, **kwargs)
        self.processes.append(process)
        return process


def death_reason(pid: int, exitcode: int) -> str:
    """``"... killed by SIGKILL ..."`` or ``"... exited with status 3 ..."``: a stored error."""
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        how = f"was killed by {name}" + (
            " (what the out-of-memory killer sends)" if name == "SIGKILL" else ""
        )
    else:
        how = f"exited with status {exitcode}"
    return f"WorkerDied: the worker process (pid {pid}) training this run {how}"


class WorkerPool:
    """A process pool of ``workers`` that can name the run whose worker died.

    Args:
        workers: worker processes.
        owner: the driver's owner token (workers exit when it dies).
    """

    def __init__(self, workers: int, owner: str) -> None:
        base = worker_context()
        self._context = _TrackedContext(base)
        self._started = base.SimpleQueue()
        self._pids: dict[str, int] = {}
        self.executor = ProcessPoolExecutor(
            workers,
            mp_context=self._context,  # type: ignore[arg-type]
            initializer=_init_worker,
            initargs=(owner, self._started),
        )

    def submit(self, rid: str, config: dict[str, Any], threads: int) -> Future:
        """Run :func:`~crossent.study.runner.execute_run` for run ``rid`` in a worker.

        On a pool that broke since the last look, the future fails with the pool's
        ``BrokenProcessPool`` at once (the run never started), like the runs in flight.
        """
        try:
            return self.executor.submit(_pool_task, rid, config, threads)
        except BrokenProcessPool as err:
            future: Future = Future()
            future.set_exception(err)
            return future

    def _drain(self) -> None:
        while not self._started.empty():
            rid, pid = self._started.get()
            self._pids[rid] = pid

    def forget(self, rid: str) -> None:
        """Drop what is known about a run that came back (keeps the record small)."""
        self._drain()
        self._pids.pop(rid, None)

    def casualties(self, runs: list[str]) -> dict[str, str] | None:
        """After the pool broke: which of ``runs`` (in flight) had their worker die, and why.

        Shuts the pool down and waits for its processes, so every exit code is known. A run
        whose worker ended by anything but the pool's own SIGTERM is a casualty; a run that
        never started, or ran in a worker the pool terminated, is not.

        Returns:
            ``{run id: reason}``, or ``None`` when no run in flight can be blamed (the
            worker that died was idle, or its exit code is unknown).
        """
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._drain()
        codes = {p.pid: p.exitcode for p in self._context.processes}
        out = {}
        for rid in runs:
            pid = self._pids.get(rid)
            code = codes.get(pid) if pid is not None else None
            if pid is not None and code is not None and code != -signal.SIGTERM:
                out[rid] = death_reason(pid, code)
        return out or None

    def shutdown(self, wait: bool) -> None:
        """Stop the workers (``wait=False``: do not wait for runs in progress)."""
        self.executor.shutdown(wait=wait, cancel_futures=True)
