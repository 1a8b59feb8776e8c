"""Run a study: claim runs from the store, train them on any executor, store the results.

The runner (the *driver*) is the only process that writes the store. Workers run
:func:`execute_run`, which never raises and returns a plain dict (metrics, history, ``.npz``
bytes of the predictions, or the traceback of a failure), so any
:class:`concurrent.futures.Executor` works: the default process pool with ``workers``
processes, a thread pool, or a distributed engine's executor (dask's
``Client.get_executor()``) with no new code path. Each worker uses
``cores // workers`` PyTorch threads. The default pool starts its workers from a fork server
that imported the libraries once (:func:`worker_context`).

Re-running a study skips finished runs; failed runs are kept with their traceback and run
again only with ``retry_failed=True``. Claims (see :mod:`crossent.study.store`) keep two
runners on one store from training the same run; the driver renews its leases while it
waits.

Example:
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from crossent.study import load_preset, run_study
    >>> with ThreadPoolExecutor(1) as pool:                                  # doctest: +SKIP
    ...     summary = run_study(load_preset("quick"), "runs/quick.db", executor=pool)
    >>> summary.finished == summary.total                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import socket
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
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

from crossent._checks import fail
from crossent.study.config import StudyConfig, StudyConfigError
from crossent.study.grid import describe_run, expand
from crossent.study.store import Store, owner_alive, owner_token, pack_arrays

#: Seconds a claim stays valid without renewal; the driver renews every quarter of it.
LEASE_SECONDS = 120.0

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


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the default worker pool: a fork server, else spawn.

    Never plain ``fork``: forking a process whose PyTorch thread pools already run can
    deadlock. The fork server is a fresh single-threaded process that only imports
    :data:`WORKER_PRELOAD`. As with ``spawn``, a script that calls :func:`run_study` must
    guard its entry point with ``if __name__ == "__main__":``.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


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


def _check_noise(runs: list[dict[str, Any]], labels: Any, num_classes: int) -> None:
    """Draw each noise kind of a study once on the training labels.

    So a mapping to a class the data set lacks fails before any run, naming
    ``noise.mapping`` (or ``noise``).
    """
    from crossent.study.prepare import noisy_labels

    drawn = set()
    for run in runs:
        noise = run["noise"]
        if noise["rate"] == 0 or noise["kind"] in drawn:
            continue
        drawn.add(noise["kind"])
        try:
            noisy_labels(labels, noise, num_classes, run["seed"])
        except (ValueError, TypeError) as err:
            path = "noise.mapping" if noise["mapping"] is not None else "noise"
            raise StudyConfigError(path, str(err)) from None


def preflight(config: StudyConfig, runs: list[dict[str, Any]]) -> None:
    """Load the data, draw the noise and build the model and every loss once, before any run.

    Raises:
        StudyConfigError: naming ``data``, ``noise``, ``model`` or ``losses[i]`` and the
            reason.
    """
    from crossent.study.models import build_model
    from crossent.study.prepare import prepare_data
    from crossent.study.taggers import TAGGERS
    from crossent.study.train import make_loss

    if config.model["name"] in TAGGERS:
        from crossent.study.tagging import preflight_tagging

        return preflight_tagging(config, runs)
    clean = {**runs[0], "noise": {"kind": "none", "rate": 0.0, "mapping": None}}
    try:
        data = prepare_data(clean)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise StudyConfigError("data", str(err)) from None
    _check_noise(runs, data.y_train, data.num_classes)
    try:
        build_model(clean["model"], tuple(data.x_train.shape[1:]), data.num_classes)
    except (ValueError, TypeError) as err:
        raise StudyConfigError("model", str(err)) from None
    index = {arm.label: i for i, arm in enumerate(config.losses)}
    built = set()
    for run in runs:
        key = json.dumps(run["loss"], sort_keys=True)
        if key in built:
            continue
        built.add(key)
        try:
            make_loss(run["loss"], data.y_train, data.num_classes)
        except (ValueError, TypeError) as err:
            raise StudyConfigError(f"losses[{index[run['loss']['label']]}]", str(err)) from None


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


def _broken(error: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    now = time.time()
    return {"status": "failed", "error": text, "started_at": now, "finished_at": now}


class _Driver:
    """The claim - submit - store loop of one :func:`run_study` call."""

    def __init__(
        self, store: Store, study: str, executor: Executor | None, workers: int, threads: int
    ) -> None:
        self.store = store
        self.study = study
        self.owner = owner_token()
        self.own_executor = executor is None
        self.executor = executor or self._pool(workers)
        self.workers = workers
        self.threads = threads
        self.in_flight: dict[Future, tuple[str, dict[str, Any]]] = {}
        self.ran = 0

    def _pool(self, workers: int) -> Executor:
        return ProcessPoolExecutor(
            workers,
            mp_context=worker_context(),
            initializer=exit_with_driver,
            initargs=(self.owner,),
        )

    def fill(self) -> None:
        """Claim runs until ``2 * workers`` are submitted."""
        room = 2 * self.workers - len(self.in_flight)
        if room <= 0:
            return
        for rid, config in self.store.claim(
            self.study, self.owner, limit=room, lease_s=LEASE_SECONDS
        ):
            future = self.executor.submit(execute_run, config, self.threads)
            self.in_flight[future] = (rid, config)

    def collect(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Wait for at least one run (renewing leases meanwhile); store and return results."""
        done, _ = wait(list(self.in_flight), timeout=LEASE_SECONDS / 4, return_when=FIRST_COMPLETED)
        self.store.renew(
            [rid for rid, _ in self.in_flight.values()], self.owner, lease_s=LEASE_SECONDS
        )
        out = []
        broken = False
        for future in done:
            rid, config = self.in_flight.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool as error:  # a worker died (native crash, out of memory)
                result, broken = _broken(error), True
            except Exception as error:  # a foreign executor's transport error
                result = _broken(error)
            if self.store.complete(rid, self.owner, result):
                self.ran += 1
            out.append((config, result))
        if broken and self.own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._pool(self.workers)
        return out

    def close(self, interrupted: bool) -> None:
        if interrupted:
            for future in self.in_flight:
                future.cancel()  # runs not started yet; their claims are released below
            self.store.release(self.owner)
        if self.own_executor:
            self.executor.shutdown(wait=not interrupted, cancel_futures=True)


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


def run_study(
    config: StudyConfig,
    store: Store | str | Path,
    *,
    executor: Executor | None = None,
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
        executor: any ``concurrent.futures.Executor``; default a process pool of ``workers``.
        workers: parallel runs (the default pool's size; how many runs are kept submitted
            to a given executor is ``2 * workers``).
        threads: PyTorch threads per run; default ``max(1, os.cpu_count() // workers)``.
        retry_failed: run failed runs again (otherwise they are kept and skipped).
        progress: show a progress bar with the ETA and the latest result.
        console: the rich console to draw on.

    Returns:
        A :class:`StudySummary`; ``elsewhere`` counts runs another runner still holds.

    Raises:
        StudyConfigError: before any run starts, when the data, model or a loss is invalid.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise fail("workers", ">= 1", workers)
    start = time.perf_counter()
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
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        driver = _Driver(db, config.name, executor, workers, threads)
        _drive(driver, todo, config.name, console, progress)
        after = [r["status"] for r in db.runs(config.name)]
    finally:
        if own_store:
            db.close()
    return StudySummary(
        study=config.name,
        total=len(after),
        finished=after.count("finished"),
        failed=after.count("failed"),
        ran=driver.ran,
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
