"""Real processes: a study killed with SIGKILL and resumed; two runners on one store.

The runners here are separate Python processes that train in-process (a thread pool as
their executor), so each test starts only the processes it is about.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from crossent.study import Store, expand, load_preset, run_id, run_study

RUNNER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from crossent.study import load_preset, run_study
with ThreadPoolExecutor(1) as pool:
    s = run_study(load_preset("quick"), sys.argv[1], executor=pool, threads=1, progress=False)
print("RAN", s.ran)
"""


def _start(db, env):
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(db)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _finished(db):
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status = 'finished'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_sigkill_mid_study_loses_nothing_and_resumes(tmp_path, subprocess_env):
    db = tmp_path / "runs.db"
    quick = load_preset("quick")
    total = len(expand(quick))
    proc = _start(db, subprocess_env)
    deadline = time.monotonic() + 120
    while _finished(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-study, wherever it is
    proc.wait()
    with Store(db) as store:
        assert store.integrity() == "ok"
        before = {r["id"]: r for r in store.runs("quick")}
    finished = {rid: r for rid, r in before.items() if r["status"] == "finished"}
    assert 2 <= len(finished) < total, "the study was not killed mid-way"
    assert all(r["metrics"] and r["history"] for r in finished.values())
    assert any(r["status"] == "running" for r in before.values())  # the dead runner's claim

    with ThreadPoolExecutor(1) as pool:
        summary = run_study(quick, db, executor=pool, threads=1, progress=False)
    assert summary.skipped == len(finished) and summary.ran == total - len(finished)
    with Store(db) as store:
        after = {r["id"]: r for r in store.runs("quick")}
        assert store.integrity() == "ok"
    assert set(after) == {run_id(c) for c in expand(quick)}
    assert all(r["status"] == "finished" for r in after.values())
    for rid, run in finished.items():  # finished runs were kept, not run again
        assert after[rid]["attempts"] == 1
        assert after[rid]["finished_at"] == run["finished_at"]
        assert after[rid]["metrics"] == run["metrics"]


def test_two_concurrent_runners_never_run_the_same_run(tmp_path, subprocess_env):
    db = tmp_path / "runs.db"
    procs = [_start(db, subprocess_env) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Store(db) as store:
        runs = store.runs("quick")
        assert store.integrity() == "ok"
    assert len(runs) == len(expand(load_preset("quick")))
    assert all(r["status"] == "finished" and r["attempts"] == 1 for r in runs)
    ran = [int(out.rsplit("RAN", 1)[1]) for out in outs]
    assert sum(ran) == len(runs)  # every run trained exactly once, by one of the two
