"""Real processes: a study killed with SIGKILL and resumed; two runners on one store."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from crossent.study import Store, expand, load_preset, run_id, run_study

# Runners that train in-process (a thread pool as executor): two such processes are the
# concurrent runners of the second test.
RUNNER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


def _descendants(pid):
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children] + [d for c in children for d in _descendants(int(c))]


def _running(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_sigkill_mid_study_loses_nothing_and_resumes(tmp_path, subprocess_env):
    """`crossent study run` with its process pool; only the driver is killed."""
    db = tmp_path / "runs.db"
    quick = load_preset("quick")
    total = len(expand(quick))
    cmd = [sys.executable, "-c", "from crossent.cli import main; main()", "study", "run",
           "--preset", "quick", "--db", str(db), "--workers", "2", "--threads", "1",
           "--no-report", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=subprocess_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _finished(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # mid-study, wherever it is
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers and not any(_running(w) for w in workers), "workers outlived the driver"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with Store(db) as store:
        assert store.integrity() == "ok"
        before = {r["id"]: r for r in store.runs("quick")}
    finished = {rid: r for rid, r in before.items() if r["status"] == "finished"}
    assert 2 <= len(finished) < total, "the study was not killed mid-way"
    assert all(r["metrics"] and r["history"] for r in finished.values())
    assert any(r["status"] == "running" for r in before.values())  # the dead runner's claims

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
