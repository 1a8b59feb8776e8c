"""Studies on a real Ray instance: ``ray.init(num_cpus=2)`` once for the module."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from crossent.study import RayExecutor, Store, run_study

ray = pytest.importorskip("ray", reason="needs the ray extra: crossent[ray]")

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cpus():
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")  # no token file written under $HOME
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield 2
        ray.shutdown()


def _stored(db):
    with Store(db, readonly=True) as store:
        return {r["id"]: r for r in store.runs("tiny")}


def test_a_study_on_ray_equals_runs_in_process(ray_cpus, tiny_baseline, tmp_path):
    config, baseline = tiny_baseline
    summary = run_study(config, tmp_path / "runs.db", executor="ray:local:2", progress=False)
    assert (summary.finished, summary.failed) == (summary.total, 0)
    runs = _stored(tmp_path / "runs.db")
    assert {rid: run["metrics"] for rid, run in runs.items()} == baseline
    env = next(iter(runs.values()))["environment"]
    assert (env["executor"], env["workers"], env["threads"]) == ("ray:local:2", ray_cpus, 1)


def _running_tasks(name):
    """Pids of Ray worker processes executing task ``name`` now (Ray sets the title)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_killed_ray_worker_loses_no_run(ray_cpus, tiny_baseline, tmp_path):
    """SIGKILL the worker process of a running task: Ray runs the task again, and every run
    is stored once with the numbers of an undisturbed run."""
    config, baseline = tiny_baseline
    db = tmp_path / "runs.db"
    killed = []

    def kill_a_running_task():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = _running_tasks("execute_run")
            if pids and db.exists():
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_running_task)
    killer.start()
    summary = run_study(config, db, executor="ray:local:2", progress=False)
    killer.join()
    assert killed, "no running task was found to kill"
    assert (summary.finished, summary.failed) == (summary.total, 0)
    runs = _stored(db)
    assert all(run["attempts"] == 1 for run in runs.values())
    assert {rid: run["metrics"] for rid, run in runs.items()} == baseline


def test_ray_executor_futures(ray_cpus):
    executor = RayExecutor()
    assert executor.submit(lambda a, b: a**b, 2, 10).result(timeout=60) == 1024
    with pytest.raises(ValueError, match="not a number"):
        executor.submit(lambda text: int(text), "not a number").result(timeout=60)
    slow = executor.submit(lambda: time.sleep(30))
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        slow.result(timeout=30)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: 1)
