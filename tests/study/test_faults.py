"""The store and the command line under faults: bad files, read-only and full disks, dying workers.

Every error is one ``Error:`` line naming the file and the cause, exit status 2; nothing is
written to a store that fails ``PRAGMA quick_check``; one pool worker killed charges only its
own run.
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossent.cli import main
from crossent.study import Store, expand, parse_config, run_id, run_study
from tests.study.helpers import tiny_raw, tiny_toml


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error(result, *needles):
    """Exit 2 and exactly one ``Error:`` line, holding every needle; no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _finished_store(folder):
    db = folder / "runs.db"
    with ThreadPoolExecutor(2) as pool:
        run_study(parse_config(tiny_raw()), db, executor=pool, workers=2, progress=False)
    return db


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- a dying pool worker


def _children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _pool_workers():
    """This process's pool workers: the children of its fork server."""
    servers = [
        c
        for c in _children(os.getpid())
        if b"forkserver" in Path(f"/proc/{c}/cmdline").read_bytes()
    ]
    return [w for server in servers for w in _children(server)]


def _finished_count(db):
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status = 'finished'").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def test_a_killed_pool_worker_charges_only_its_own_run(tmp_path):
    """SIGKILL one of two pool workers mid-study (as the out-of-memory killer does).

    Four runs are in flight (two training, two queued); only the killed worker's run is
    stored as failed, the other three go back to pending and a fresh pool finishes them.
    """
    db = tmp_path / "runs.db"
    config = parse_config(tiny_raw(training={"epochs": 6, "batch_size": 64, "lr": 0.01}))
    killed = []

    def kill_one_worker():
        deadline = time.monotonic() + 120
        while _finished_count(db) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = _pool_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    summary = run_study(config, db, workers=2, threads=1, progress=False)
    killer.join()
    assert killed, "no pool worker was found to kill"
    assert (summary.total, summary.failed, summary.finished) == (12, 1, 11)
    with Store(db) as store:
        (failed,) = store.runs("tiny", "failed")
        assert f"pid {killed[0]}" in failed["error"] and "SIGKILL" in failed["error"]
        assert failed["environment"]["executor"] == "process:2"
        finished = store.runs("tiny", "finished")
        assert all(r["attempts"] == 1 for r in finished)  # given back: attempt not counted
    again = run_study(config, db, workers=2, threads=1, retry_failed=True, progress=False)
    assert (again.ran, again.finished, again.failed) == (1, 12, 0)


# ---------------------------------------------------------------- read-only stores


def _read_everything(db):
    with Store(db, readonly=True) as store:
        rid = store.runs("tiny")[0]["id"]
    for args in (["list"], ["list", "tiny"], ["report", "tiny", "--json"], ["show", rid]):
        result = _invoke("study", *args, "--db", db)
        assert result.exit_code == 0, (args, result.output)
    return json.loads(_invoke("study", "report", "tiny", "--json", "--db", db).output)


def test_reading_commands_work_on_a_read_only_file_system(small_disk):
    folder = small_disk("store", 4096)
    db = _finished_store(folder)
    small_disk.readonly(folder)
    with pytest.raises(OSError):  # really read-only
        (folder / "probe").write_bytes(b"x")
    assert _read_everything(db)["runs"]["finished"] == 12


READ_EVERYTHING = """
import json, sys
from click.testing import CliRunner
from crossent.cli import main
db, rid, folder = sys.argv[1:]
try:
    open(folder + "/probe", "w")
    writable = True
except PermissionError:
    writable = False
codes = [CliRunner().invoke(main, ["study", *args, "--db", db]).exit_code
         for args in (["list"], ["list", "tiny"], ["show", rid])]
report = CliRunner().invoke(main, ["study", "report", "tiny", "--json", "--db", db])
print(json.dumps({"writable": writable, "codes": codes + [report.exit_code],
                  "finished": json.loads(report.stdout)["runs"]["finished"]}))
"""

#: Root writes read-only files anyway: drop that power (CAP_DAC_OVERRIDE) for the readers.
_AS_ROOT = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"]  # fmt: skip


def test_reading_commands_work_on_a_read_only_file_and_folder(tmp_path, subprocess_env):
    """``chmod 444`` store in a ``chmod 555`` folder: SQLite cannot create the WAL's ``-shm``
    next to it, and the reading commands still work (they run in a process that obeys the
    permission bits, also when the tests run as root)."""
    prefix = _AS_ROOT if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("root ignores permission bits, and setpriv (to give that up) is missing")
    folder = tmp_path / "store"
    folder.mkdir()
    db = _finished_store(folder)  # closed: no -wal / -shm left next to it
    assert sorted(p.name for p in folder.iterdir()) == ["runs.db"]
    rid = run_id(expand(parse_config(tiny_raw()))[0])
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", READ_EVERYTHING, str(db), rid, str(folder)],
            env=subprocess_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"writable": False, "codes": [0, 0, 0, 0], "finished": 12}


# ---------------------------------------------------------------- bad files: one Error line


def test_a_file_that_is_not_a_store(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 200)
    before = _digest(db)
    for args in (["list"], ["report"], ["show", "abc"]):
        _one_error(_invoke("study", *args, "--db", db), str(db), "not a SQLite database")
    result = _invoke("study", "run", tiny_toml(tmp_path), "--db", db, "--no-progress")
    _one_error(result, str(db), "not a SQLite database")
    assert _digest(db) == before


def test_an_empty_database_is_not_a_store(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    _one_error(_invoke("study", "list", "--db", db), str(db), "not a crossent study store")


def _damaged_store(db):
    """A store whose pages are damaged where registering a study does not look (an overflow
    chain of a stored result): opening works, ``PRAGMA quick_check`` fails."""
    with Store(db) as store:
        store.register_study("old", {}, [{"seed": i} for i in range(4)], list("abcd"))
        ((rid, _),) = store.claim("old", "me:1:1", limit=1)
        store.complete(rid, "me:1:1", {"status": "finished", "arrays": os.urandom(200_000)})
    data = bytearray(db.read_bytes())
    page = len(data) // 4096 - 10  # inside the 200 kB blob's overflow pages
    data[page * 4096 : page * 4096 + 4] = (123456).to_bytes(4, "big")  # next-page pointer
    db.write_bytes(bytes(data))


def test_a_damaged_store_is_checked_before_anything_is_written(tmp_path):
    db = tmp_path / "runs.db"
    _damaged_store(db)
    before = _digest(db)
    result = _invoke("study", "run", tiny_toml(tmp_path), "--db", db, "--no-progress")
    _one_error(result, str(db), "the store is damaged", "invalid page number")
    assert _digest(db) == before  # no study registered, no journal mode switched


def test_a_store_in_a_read_only_folder(small_disk, tmp_path):
    folder = small_disk("readonly", 64)
    small_disk.readonly(folder)
    db = folder / "runs.db"
    result = _invoke("study", "run", tiny_toml(tmp_path), "--db", db, "--no-progress")
    _one_error(result, str(db), "is not writable")


def test_a_full_disk_under_the_store(small_disk, tmp_path):
    """The study registers, then storing results fills the disk: one Error line (not two
    chained tracebacks), and the store stays consistent."""
    folder = small_disk("full", 200)
    db = folder / "runs.db"
    result = _invoke(
        "study", "run", tiny_toml(tmp_path), "--db", db, "--workers", 1, "--threads", 1,
        "--no-progress", "--no-report",
    )  # fmt: skip
    _one_error(result, str(db), "the disk is full")
    with Store(db, readonly=True) as store:
        assert store.integrity() == "ok"
        runs = store.runs("tiny")
    assert len(runs) == len(expand(parse_config(tiny_raw())))
    assert all(r["metrics"] and r["history"] for r in runs if r["status"] == "finished")


def test_an_unwritable_out_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = tmp_path / "runs.db"
    result = _invoke(
        "study", "run", tiny_toml(tmp_path), "--db", db, "--out", blocker / "report",
        "--no-progress",
    )  # fmt: skip
    _one_error(result, str(blocker / "report"), "cannot write the report there")
    assert not db.exists()  # nothing trained, nothing stored


def test_a_full_out_folder(small_disk, tmp_path):
    db = _finished_store(tmp_path)
    out = small_disk("out", 16)
    result = _invoke("study", "report", "tiny", "--db", db, "--out", out)
    _one_error(result, str(out), "cannot write the report (No space left on device)")


# ---------------------------------------------------------------- config files


def test_a_config_that_is_not_utf8(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('[study]\ndescription = "Überblick"\n'.encode("latin-1"))
    result = _invoke("study", "run", config, "--db", tmp_path / "runs.db")
    _one_error(result, "not UTF-8", "byte 0xdc")
    assert not (tmp_path / "runs.db").exists()
