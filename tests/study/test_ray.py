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


def _kill_a_running_task_during(db, study):
    """Run ``study()`` while a thread SIGKILLs the worker process of a running task."""
    killed = []

    def kill():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = _running_tasks("execute_run")
            if pids and db.exists():
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill)
    killer.start()
    summary = study()
    killer.join()
    assert killed, "no running task was found to kill"
    return summary


def test_a_killed_ray_worker_loses_no_run(ray_cpus, tiny_baseline, tmp_path):
    """SIGKILL the worker process of a running task: Ray runs the task again, and every run
    is stored once with the numbers of an undisturbed run."""
    config, baseline = tiny_baseline
    db = tmp_path / "runs.db"
    summary = _kill_a_running_task_during(
        db, lambda: run_study(config, db, executor="ray:local:2", progress=False)
    )
    assert (summary.finished, summary.failed) == (summary.total, 0)
    runs = _stored(db)
    assert all(run["attempts"] == 1 for run in runs.values())
    assert {rid: run["metrics"] for rid, run in runs.items()} == baseline


def test_a_run_ray_gives_up_on_is_stored_as_failed_with_the_reason(
    ray_cpus, tiny_baseline, tmp_path
):
    """Without retries the killed task's run is stored as failed with Ray's error; a re-run
    with ``retry_failed`` trains it and the study ends as if nothing happened."""
    config, baseline = tiny_baseline
    db = tmp_path / "runs.db"
    executor = RayExecutor(max_retries=0)
    summary = _kill_a_running_task_during(
        db, lambda: run_study(config, db, executor=executor, workers=2, progress=False)
    )
    executor.shutdown()
    assert summary.failed == 1 and summary.finished == summary.total - 1
    (failed,) = [run for run in _stored(db).values() if run["status"] == "failed"]
    assert "WorkerCrashedError" in failed["error"]
    assert failed["environment"]["executor"] == "RayExecutor"
    again = run_study(config, db, executor="ray:local:2", retry_failed=True, progress=False)
    assert (again.ran, again.finished, again.failed) == (1, summary.total, 0)
    assert {rid: run["metrics"] for rid, run in _stored(db).items()} == baseline


def test_ray_executor_futures(ray_cpus):
    executor = RayExecutor()
    assert executor.submit(lambda a, b: a**b, 2, 10).result(timeout=60) == 1024
    with pytest.raises(ValueError, match="not a number"):
        executor.submit(lambda text: int(text), "not a number").result(timeout=60)
    slow = executor.submit(lambda: time.sleep(300))  # cancelled long before it ends
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        slow.result(timeout=120)  # generous: a loaded machine delays the cancellation
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: 1)
