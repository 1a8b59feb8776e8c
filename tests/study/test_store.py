import multiprocessing
import subprocess
import sys
import time

import numpy as np
import pytest

from crossent.study import Store
from crossent.study.grid import run_id
from crossent.study.owners import owner_alive, owner_token
from crossent.study.store import StoreError, pack_arrays

RUNS = [{"seed": s, "x": "a"} for s in range(4)]
IDS = [run_id(r) for r in RUNS]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.db") as s:
        s.register_study("s", {"name": "s"}, RUNS, [f"run {i}" for i in range(4)])
        yield s


def _finished(metrics=None):
    return {
        "status": "finished",
        "metrics": metrics or {"accuracy": 0.5},
        "history": {"train_loss": [1.0]},
        "arrays": pack_arrays({"p": np.arange(3)}),
        "started_at": 1.0,
        "finished_at": 2.0,
        "duration_s": 1.0,
        "environment": {"crossent": "0"},
    }


def _dead_owner():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = owner_token(proc.pid)
    proc.wait()
    return owner


def test_register_is_idempotent_and_keeps_results(store):
    assert store.register_study("s", {"name": "s"}, RUNS, ["a", "b", "c", "d"]) == 0
    ((rid, config),) = store.claim("s", "me:1:1", limit=1)
    assert rid == IDS[0] and config == RUNS[0]
    assert store.complete(rid, "me:1:1", _finished())
    assert (
        store.register_study("s", {"name": "s"}, RUNS + [{"seed": 9}], ["a", "b", "c", "d", "e"])
        == 1
    )
    assert store.get(rid)["status"] == "finished"
    assert [r["id"] for r in store.runs("s")] == IDS + [run_id({"seed": 9})]


def test_claims_are_exclusive(store):
    me = owner_token()
    first = store.claim("s", me, limit=3)
    second = store.claim("s", me, limit=3)
    assert [rid for rid, _ in first] == IDS[:3]
    assert [rid for rid, _ in second] == IDS[3:]  # a live owner's claims are not taken again
    assert store.claim("s", me, limit=3) == []
    assert {r["status"] for r in store.runs("s")} == {"running"}
    assert {r["attempts"] for r in store.runs("s")} == {1}


def test_stale_claims_are_reclaimable(store):
    dead = _dead_owner()
    assert owner_alive(dead) is False
    assert owner_alive(owner_token()) is True
    store.claim("s", owner_token(), limit=1)  # lease valid, owner alive
    store.claim("s", dead, limit=2)
    reclaimed = store.claim("s", "other:1:1", limit=4)
    assert [rid for rid, _ in reclaimed] == IDS[1:]
    # "other" is another host: its claims stay until their lease runs out
    assert store.claim("s", "me:2:2", limit=4) == []


def test_expired_lease_is_reclaimable_and_renew_extends(store):
    me = owner_token()
    store.claim("s", "far-host:5:5", limit=1, lease_s=0.01)
    time.sleep(0.02)
    assert [rid for rid, _ in store.claim("s", me, limit=1)] == [IDS[0]]
    store.renew([IDS[0]], me, lease_s=100)
    assert store.claim("s", "far:1:1", limit=1)[0][0] == IDS[1]


def test_only_the_owner_completes(store):
    store.claim("s", "a:1:1", limit=1)
    assert not store.complete(IDS[0], "b:1:1", _finished())
    assert store.get(IDS[0])["status"] == "running"
    assert store.complete(IDS[0], "a:1:1", _finished({"accuracy": 0.75}))
    run = store.get(IDS[0])
    assert run["status"] == "finished" and run["metrics"] == {"accuracy": 0.75}
    assert run["history"] == {"train_loss": [1.0]} and run["duration_s"] == 1.0
    assert not store.complete(IDS[0], "a:1:1", _finished())  # finished runs are final
    np.testing.assert_array_equal(store.arrays(IDS[0])["p"], np.arange(3))


def test_failed_runs_are_kept_and_only_retried_on_request(store):
    store.claim("s", "a:1:1", limit=1)
    failure = {"status": "failed", "error": "Traceback ...\nValueError: boom"}
    assert store.complete(IDS[0], "a:1:1", failure)
    assert store.get(IDS[0])["error"].endswith("boom")
    claimed = [rid for rid, _ in store.claim("s", "b:1:1", limit=4)]
    assert IDS[0] not in claimed
    assert store.reset_failed("s") == 1
    assert store.claim("s", "c:1:1", limit=4)[0][0] == IDS[0]
    assert store.get(IDS[0])["attempts"] == 2


def test_release_gives_an_owners_claims_back(store):
    store.claim("s", "a:1:1", limit=2)
    store.claim("s", "b:1:1", limit=1)
    assert store.release("a:1:1") == 2
    run = store.get(IDS[0])
    assert run["status"] == "pending" and run["attempts"] == 0 and run["owner"] is None
    assert store.get(IDS[2])["status"] == "running"  # another owner's claim stays


def test_release_of_given_runs_only(store):
    store.claim("s", "a:1:1", limit=3)
    assert store.release("a:1:1", [IDS[0], IDS[2], IDS[3]]) == 2  # IDS[3] was not claimed
    assert [r["status"] for r in store.runs("s")] == ["pending", "running", "pending", "pending"]
    assert store.get(IDS[1])["attempts"] == 1 and store.get(IDS[0])["attempts"] == 0


def test_a_readonly_store_reads_and_never_writes(store):
    path = store.path
    store.close()
    before = path.read_bytes()
    with Store(path, readonly=True) as reader:
        assert [r["id"] for r in reader.runs("s")] == IDS
        with pytest.raises(StoreError, match=r"runs\.db: the file is read-only"):
            reader.claim("s", "me:1:1")
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="no such file"):
        Store(path.parent / "missing.db", readonly=True)
    assert not (path.parent / "missing.db").exists()


def test_get_by_prefix_and_studies(store):
    assert store.get(IDS[1][:6])["id"] == IDS[1]
    assert store.get(IDS[1])["studies"] == ["s"]
    with pytest.raises(KeyError, match="no run"):
        store.get("zzzz")
    with pytest.raises(KeyError, match="more than one"):
        store.get("")
    (entry,) = store.studies()
    assert entry["name"] == "s" and entry["counts"]["pending"] == 4
    assert store.study_config("s") == {"name": "s"}
    with pytest.raises(KeyError):
        store.study_config("nope")


def test_store_is_wal_and_healthy(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity() == "ok"


def test_a_failed_transaction_changes_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("UPDATE runs SET status = 'failed'")
        raise RuntimeError
    assert {r["status"] for r in store.runs("s")} == {"pending"}


def _open_at_once(path, barrier, errors):
    barrier.wait()
    try:
        Store(path).close()
    except StoreError as err:
        errors.put(str(err))


def test_runners_opening_a_new_store_at_the_same_moment_both_succeed(tmp_path):
    # SQLite refuses the switch to WAL at once ("database is locked") while the other
    # process holds the new file; the store waits for it instead (without the wait, 5 of 5
    # runs of this test failed). Forked processes, released together by a barrier.
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_ in range(30):
        path = tmp_path / f"runs{round_}.db"
        barrier = context.Barrier(2)
        procs = [
            context.Process(target=_open_at_once, args=(path, barrier, errors)) for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0]
        assert errors.empty(), errors.get()
        with Store(path) as store:
            assert store.integrity() == "ok"
