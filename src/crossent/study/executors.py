"""Where a study's runs execute: this machine's processes, a Dask cluster or a Ray cluster.

An executor is named by one string (``crossent study run --executor``)::

    process:N        N local worker processes (the runner's own pool; the default)
    dask:ADDRESS     a running Dask scheduler, e.g. dask:tcp://scheduler:8786
    dask:local:N     a Dask LocalCluster of N single-threaded worker processes
    ray:ADDRESS      a running Ray cluster, e.g. ray:auto or ray:ray://head:10001
    ray:local:N      a local Ray instance with N CPUs (or the one this process started)

Dask runs through ``distributed.Client(...).get_executor()``; Ray through
:class:`RayExecutor`, a small :class:`concurrent.futures.Executor` over ``ray.remote`` tasks and
``ObjectRef.future()``. Every run is one task asking for one CPU; the worker sets its own
PyTorch thread count. Both engines retry a task whose worker died (Dask up to
``distributed.scheduler.allowed-failures`` times, Ray up to ``max_retries``); after that the
run is stored as failed with the engine's error (``KilledWorker``, ``WorkerCrashedError``).

Data: bundled and generated data sets are built on each worker from the config. File-backed
ones (``csv:PATH``, ``npz:PATH``, ``cifar10``, ``fashion-mnist``, ``conll2003``) are read by
each worker from its own file system, so on a remote cluster the path must be shared (the
same absolute path on every worker, e.g. an NFS mount) and the config says so with
``[data] shared = true``; :func:`check_reachable` refuses the study before any run otherwise.

Example:
    >>> parse_executor("dask:local:2")
    ExecutorSpec(kind='dask', address=None, workers=2)
    >>> parse_executor("ray:auto").remote
    True
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from crossent.study.config import FILE_BACKED, StudyConfig, StudyConfigError

_FORMS = "process:N, dask:ADDRESS, dask:local:N, ray:ADDRESS or ray:local:N"

#: How long to try reaching a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT = "30s"
_EXTRAS = {"dask": ("distributed", "dask"), "ray": ("ray", "ray")}


class ExecutorError(RuntimeError):
    """An executor that cannot be used: not installed, unreachable, or without workers."""


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed ``--executor`` string (see the module doc)."""

    kind: str
    address: str | None
    workers: int | None

    @property
    def remote(self) -> bool:
        """Whether the workers may run on other machines (a cluster address was given)."""
        return self.kind != "process" and self.address is not None

    def __str__(self) -> str:
        if self.address is not None:
            return f"{self.kind}:{self.address}"
        return (
            f"process:{self.workers}"
            if self.kind == "process"
            else f"{self.kind}:local:{self.workers}"
        )


def parse_executor(text: str) -> ExecutorSpec:
    """Parse ``process:N | dask:ADDRESS | dask:local:N | ray:ADDRESS | ray:local:N``.

    Raises:
        ValueError: naming ``executor``, the value and the accepted forms.
    """
    kind, _, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
    local, _, count = rest.partition(":")
    if kind == "process" and rest.isdigit() and int(rest) >= 1:
        return ExecutorSpec("process", None, int(rest))
    if kind in ("dask", "ray") and local == "local" and count.isdigit() and int(count) >= 1:
        return ExecutorSpec(kind, None, int(count))
    if kind in ("dask", "ray") and rest and local != "local":
        return ExecutorSpec(kind, rest, None)
    raise ValueError(f"Expected `executor` to be {_FORMS} (N >= 1), but got {text!r}")


@dataclass
class Backend:
    """An opened executor.

    ``executor`` is ``None`` for the runner's own process pool; ``name`` is how the report
    shows it; ``workers`` is how many runs it executes at once.
    """

    executor: Executor | None
    name: str
    workers: int


def check_reachable(config: StudyConfig, spec: ExecutorSpec) -> None:
    """Refuse a file-backed data set that remote workers may not see, before any run.

    Raises:
        StudyConfigError: at ``data.shared`` (the path is not marked as shared) or
            ``data.name`` / ``data.data_dir`` (a relative path, which each worker would
            resolve in its own working directory).
    """
    data = config.data
    prefix, sep, path = data["name"].partition(":")
    from_file = bool(sep) or data["name"] in FILE_BACKED
    if not spec.remote or not from_file:
        return
    if not config.data_shared:
        raise StudyConfigError(
            "data.shared",
            f"{data['name']!r} is read from a file, and the workers of {spec} may run on other "
            "machines that cannot see this machine's files: put the data on a file system "
            "every worker mounts at the same absolute path and set `shared = true` in [data]",
        )
    for key, value in (("name", path if sep else None), ("data_dir", data["data_dir"])):
        if value is not None and not value.startswith(("/", "~")):
            raise StudyConfigError(
                f"data.{key}",
                f"{value!r} is a relative path, which each worker of {spec} would resolve in "
                "its own working directory: give an absolute path",
            )


def _engine(kind: str) -> Any:
    module, extra = _EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExecutorError(
            f"--executor {kind}:... needs the `{module}` package: pip install 'crossent[{extra}]'"
        ) from None


class RayExecutor(Executor):
    """A :class:`concurrent.futures.Executor` that runs each call as one Ray task.

    ``submit(fn, *args)`` is ``ray.remote(num_cpus=..., max_retries=...)(fn).remote(*args)``
    and returns ``ObjectRef.future()``. Ray must be initialized (``ray.init``) first.

    Args:
        num_cpus: CPUs each task asks for.
        max_retries: how often Ray runs a task again whose worker process died.
    """

    def __init__(self, *, num_cpus: float = 1, max_retries: int = 3) -> None:
        import ray

        if not ray.is_initialized():
            raise ExecutorError("Ray is not initialized: call ray.init(...) first")
        self._ray = ray
        self._options = {"num_cpus": num_cpus, "max_retries": max_retries}
        self._remote: dict[Callable[..., Any], Any] = {}
        self._refs: dict[Future, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Start ``fn(*args, **kwargs)`` as a Ray task; its future."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if fn not in self._remote:
                self._remote[fn] = self._ray.remote(**self._options)(fn)
            ref = self._remote[fn].remote(*args, **kwargs)
            future = ref.future()
            self._refs[future] = ref
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        with self._lock:
            self._refs.pop(future, None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more tasks; cancel the unfinished ones or wait for them."""
        with self._lock:
            self._closed = True
            pending = dict(self._refs)
        if cancel_futures:
            for ref in pending.values():
                with contextlib.suppress(Exception):  # a task that just finished
                    self._ray.cancel(ref)
        elif wait:
            for future in pending:
                with contextlib.suppress(Exception):  # the caller reads the errors
                    future.result()


@contextlib.contextmanager
def _dask(spec: ExecutorSpec) -> Iterator[Backend]:
    distributed = _engine("dask")
    with contextlib.ExitStack() as stack:
        try:
            if spec.address is None:
                target: Any = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=spec.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",  # any free port: never clash with 8787
                    )
                )
            else:
                target = spec.address
            client = stack.enter_context(distributed.Client(target, timeout=DASK_CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as err:
            raise ExecutorError(f"cannot reach the Dask scheduler of {spec}: {err}") from None
        slots = sum(client.nthreads().values())
        if not slots:
            raise ExecutorError(f"no Dask worker is connected to the scheduler of {spec}")
        executor = client.get_executor(pure=False)
        try:
            yield Backend(executor, str(spec), slots)
        finally:
            executor.shutdown(wait=False)  # cancels what an interrupted study left running


@contextlib.contextmanager
def _ray(spec: ExecutorSpec) -> Iterator[Backend]:
    ray = _engine("ray")
    started = not ray.is_initialized()
    if started:
        try:
            if spec.address is None:
                ray.init(num_cpus=spec.workers, include_dashboard=False)
            else:
                ray.init(address=spec.address)
        except (ConnectionError, RuntimeError) as err:
            raise ExecutorError(f"cannot reach the Ray cluster of {spec}: {err}") from None
    try:
        executor = RayExecutor()
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if not cpus:
            raise ExecutorError(f"the Ray cluster of {spec} has no CPU")
        try:
            yield Backend(executor, str(spec), cpus)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def open_executor(spec: ExecutorSpec | str) -> Iterator[Backend]:
    """Start or connect to the executor ``spec`` names; close what was started on exit.

    Raises:
        ValueError: for a string that names no executor.
        ExecutorError: when the engine is not installed, unreachable or has no workers.
    """
    spec = parse_executor(spec) if isinstance(spec, str) else spec
    if spec.kind == "process":
        yield Backend(None, str(spec), spec.workers or 1)
    else:
        with (_dask if spec.kind == "dask" else _ray)(spec) as backend:
            yield backend
