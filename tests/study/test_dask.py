"""Studies on a real Dask cluster: a LocalCluster of two single-threaded worker processes."""

import os
import signal
import sqlite3
import threading
import time

import pytest
from click.testing import CliRunner

from crossent.cli import main
from crossent.study import Store, expand, load_preset, open_executor, run_study

distributed = pytest.importorskip("distributed", reason="needs the dask extra: crossent[dask]")


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


def _stored(db, study):
    with Store(db, readonly=True) as store:
        return {r["id"]: r for r in store.runs(study)}


def test_quick_on_dask_equals_the_process_pool(cluster, quick_study, tmp_path):
    local, _ = cluster
    address, threads = local.scheduler_address, quick_study.threads
    result = CliRunner().invoke(
        main,
        ["study", "run", "--preset", "quick", "--executor", f"dask:{address}",
         "--threads", str(threads), "--db", str(tmp_path / "dask.db"), "--no-progress",
         "--no-report"],
    )  # fmt: skip
    total = len(expand(load_preset("quick")))
    assert result.exit_code == 0, result.output
    assert f"{total}/{total} finished" in result.output
    pool, dask = _stored(quick_study.db, "quick"), _stored(tmp_path / "dask.db", "quick")
    assert set(pool) == set(dask) and len(dask) == total
    for rid, run in dask.items():  # the same seeds and threads give the same numbers, bit for bit
        assert run["metrics"] == pool[rid]["metrics"]
        assert run["history"] == pool[rid]["history"]
        env = run["environment"]
        assert (env["executor"], env["workers"], env["threads"]) == (f"dask:{address}", 2, threads)


def _finished(db):
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status = 'finished'").fetchone()[0]
    except sqlite3.OperationalError:  # no store yet
        return 0


def _kill_a_busy_worker_during(client, db, study):
    """Run ``study()`` while a thread SIGKILLs a worker busy with one of its tasks."""
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the last test's victim
    killed = []

    def kill():
        deadline = time.monotonic() + 120
        while _finished(db) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:  # the pid of that worker now (its event loop answers while a task runs)
            (pid,) = client.run(os.getpid, workers=busy[:1]).values()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill)
    killer.start()
    summary = study()
    killer.join()
    assert killed, "no busy worker was found to kill"
    return summary


def test_a_killed_dask_worker_loses_no_run(cluster, tiny_baseline, tmp_path):
    """SIGKILL a worker process while it runs a study's task (its nanny starts a new one).

    Dask runs the killed task again on a live worker: every run finishes once in the store,
    with the numbers of an undisturbed run.
    """
    local, client = cluster
    config, baseline = tiny_baseline
    db = tmp_path / "runs.db"
    address = f"dask:{local.scheduler_address}"
    summary = _kill_a_busy_worker_during(
        client, db, lambda: run_study(config, db, executor=address, progress=False)
    )
    assert (summary.finished, summary.failed) == (summary.total, 0)
    runs = _stored(db, "tiny")
    assert all(run["attempts"] == 1 for run in runs.values())
    assert {rid: run["metrics"] for rid, run in runs.items()} == baseline


def test_dask_local_starts_and_stops_its_own_cluster():
    with open_executor("dask:local:1") as backend:
        assert (backend.name, backend.workers) == ("dask:local:1", 1)
        assert backend.executor.submit(os.getpid).result() != os.getpid()
