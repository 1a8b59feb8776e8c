"""The results store: one SQLite file holding every run of every study.

Tables:

* ``runs`` — one row per resolved run config, keyed by its stable id (hash of the config):
  ``status`` (``pending`` | ``running`` | ``finished`` | ``failed``), the config, metrics,
  per-epoch history and prediction arrays (JSON / compressed ``.npz``), timings, the library
  and PyTorch versions, the traceback of a failure, and the claim (``owner``,
  ``lease_until``, ``attempts``).
* ``studies`` and ``study_runs`` — a study's config and the ordered list of its runs (a run
  shared by two studies is stored, and trained, once).

Safety: the database is in WAL mode with ``synchronous=FULL`` and every write is one
transaction, so a process killed at any moment (SIGKILL included) leaves either the old or
the new state, never half a run. A runner *claims* runs before training them in a single
``BEGIN IMMEDIATE`` transaction (status ``running``, its owner ``host:pid:start-time`` and a
lease), so two runners on one store never train the same run. A claim is stale — and the run
can be claimed again — when its lease has expired, or when its owner ran on this host and
that process is gone (a killed runner is noticed at once). Only the owner of a claim can
store its result.

Before anything is written to an existing file, ``PRAGMA quick_check`` must pass. A store
opened with ``readonly=True`` never writes the file, so a finished store can be read from a
read-only file, folder or file system (where a writable folder allows, SQLite still keeps
its ``-wal`` / ``-shm`` companion files next to it). Problems with the file raise
:class:`StoreError` (``"<path>: <cause>"``).

Example:
    >>> import tempfile, os
    >>> store = Store(os.path.join(tempfile.mkdtemp(), "runs.db"))
    >>> store.register_study("demo", {}, [{"seed": 0}], ["seed 0"])
    1
    >>> [r["status"] for r in store.runs("demo")]
    ['pending']
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crossent.study._sqlite import (
    StoreError,
    connect,
    connect_readonly,
    quick_check,
    translated,
    use_wal,
)
from crossent.study.grid import canonical_json, run_id
from crossent.study.owners import owner_alive

SCHEMA_VERSION = "1"
STATUSES = ("pending", "running", "finished", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,
    history TEXT,
    arrays BLOB,
    error TEXT,
    environment TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_s REAL
);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS study_runs (
    study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
    run_id TEXT NOT NULL REFERENCES runs(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (study, run_id)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


def _stale(owner: str | None, lease_until: float | None, now: float) -> bool:
    if owner is None or lease_until is None or lease_until < now:
        return True
    return owner_alive(owner) is False


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Compress named arrays into ``.npz`` bytes (how a worker hands them back)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


class Store:
    """A study results store in one SQLite file (see the module doc).

    Args:
        path: the database file; its folder is created if needed.
        timeout: seconds to wait for another process's write lock.
        readonly: open an existing store only to read it (``study list``, ``report``,
            ``show``): the file is never written, so this works on a read-only file, folder
            or file system.

    Raises:
        StoreError: ``"<path>: <cause>"`` when the file is not a store, is damaged (checked
            with ``PRAGMA quick_check`` before anything is written to an existing file),
            cannot be opened or created, or a write fails (a full disk).
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        with translated(self.path):
            if readonly:
                self._db = connect_readonly(self.path, timeout)
            else:
                self._open(timeout)
        self._db.row_factory = sqlite3.Row

    def _open(self, timeout: float) -> None:
        existed = self.path.is_file() and self.path.stat().st_size > 0
        self._db = connect(self.path, timeout)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            damage = quick_check(self._db) if existed else None
            if damage is not None:
                raise StoreError(self.path, damage)
            use_wal(self._db, timeout)
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._create_schema()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one atomic write.

        A failing ``COMMIT`` (a full disk) is rolled back too and raised as a
        :class:`StoreError`, once.
        """
        with translated(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _read(self, query: str, args: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        with translated(self.path):
            return self._db.execute(query, args).fetchall()

    # ------------------------------------------------------------ studies

    def register_study(
        self, name: str, config: dict[str, Any], runs: list[dict[str, Any]], descriptions: list[str]
    ) -> int:
        """Store a study and its runs; runs already stored keep their status and results.

        Returns:
            The number of runs new to the store.
        """
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO studies (name, config, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated_at = ?",
                (name, canonical_json(config), now, now, now),
            )
            db.execute("DELETE FROM study_runs WHERE study = ?", (name,))
            new = 0
            for position, (run, text) in enumerate(zip(runs, descriptions, strict=True)):
                rid = run_id(run)
                cursor = db.execute(
                    "INSERT OR IGNORE INTO runs (id, config, description, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (rid, canonical_json(run), text, now),
                )
                new += cursor.rowcount
                db.execute(
                    "INSERT INTO study_runs (study, run_id, position) VALUES (?, ?, ?)",
                    (name, rid, position),
                )
        return new

    def studies(self) -> list[dict[str, Any]]:
        """Every study, most recently updated first, with its run counts per status."""
        rows = self._read(
            "SELECT s.name, s.updated_at, r.status, COUNT(r.id) AS n FROM studies s "
            "LEFT JOIN study_runs sr ON sr.study = s.name LEFT JOIN runs r ON r.id = sr.run_id "
            "GROUP BY s.name, r.status ORDER BY s.updated_at DESC"
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = out.setdefault(
                row["name"], {"name": row["name"], "updated_at": row["updated_at"]}
            )
            entry.setdefault("counts", dict.fromkeys(STATUSES, 0))
            if row["status"] is not None:
                entry["counts"][row["status"]] = row["n"]
        return list(out.values())

    def study_config(self, name: str) -> dict[str, Any]:
        """The stored config summary of a study."""
        rows = self._read("SELECT config FROM studies WHERE name = ?", (name,))
        if not rows:
            raise KeyError(f"no study named {name!r} in {self.path}")
        return json.loads(rows[0]["config"])

    def reset_failed(self, study: str) -> int:
        """Make the failed runs of a study pending again (``--retry-failed``); returns how many."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL "
                "WHERE status = 'failed' AND id IN (SELECT run_id FROM study_runs WHERE study = ?)",
                (study,),
            )
        return cursor.rowcount

    # ------------------------------------------------------------ claims

    def claim(
        self, study: str, owner: str, *, limit: int = 1, lease_s: float = 120.0
    ) -> list[tuple[str, dict[str, Any]]]:
        """Atomically claim up to ``limit`` runnable runs of a study, in study order.

        Runnable: ``pending``, or ``running`` with a stale claim (see the module doc).
        Finished and failed runs are never claimed.

        Returns:
            ``(run_id, config)`` of each claimed run.
        """
        now = time.time()
        claimed: list[tuple[str, dict[str, Any]]] = []
        with self.transaction() as db:
            rows = db.execute(
                "SELECT r.id, r.config, r.status, r.owner, r.lease_until FROM study_runs sr "
                "JOIN runs r ON r.id = sr.run_id WHERE sr.study = ? "
                "AND r.status IN ('pending', 'running') ORDER BY sr.position",
                (study,),
            ).fetchall()
            for row in rows:
                if len(claimed) >= limit:
                    break
                if row["status"] == "running" and not _stale(row["owner"], row["lease_until"], now):
                    continue
                db.execute(
                    "UPDATE runs SET status = 'running', owner = ?, lease_until = ?, "
                    "attempts = attempts + 1, started_at = ?, error = NULL WHERE id = ?",
                    (owner, now + lease_s, now, row["id"]),
                )
                claimed.append((row["id"], json.loads(row["config"])))
        return claimed

    def renew(self, ids: list[str], owner: str, *, lease_s: float = 120.0) -> None:
        """Extend the lease of this owner's claims."""
        if not ids:
            return
        until = time.time() + lease_s
        with self.transaction() as db:
            db.executemany(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'",
                [(until, rid, owner) for rid in ids],
            )

    def release(self, owner: str, ids: list[str] | None = None) -> int:
        """Give back claims of ``owner`` unrun; returns how many.

        Args:
            owner: the claim's owner token.
            ids: only these runs (runs in flight when a pool worker died); default every
                claim of ``owner`` (an interrupted runner).

        The runs become pending again and the attempt is not counted.
        """
        query = (
            "UPDATE runs SET status = 'pending', owner = NULL, lease_until = NULL, "
            "attempts = MAX(attempts - 1, 0) WHERE owner = ? AND status = 'running'"
        )
        with self.transaction() as db:
            if ids is None:
                return db.execute(query, (owner,)).rowcount
            return sum(db.execute(query + " AND id = ?", (owner, rid)).rowcount for rid in ids)

    def complete(self, rid: str, owner: str, result: dict[str, Any]) -> bool:
        """Store a worker's result (finished or failed) if ``owner`` still holds the claim.

        Args:
            rid: the run id.
            owner: the claim's owner token.
            result: the worker's dict: ``status``, ``metrics``, ``history``, ``arrays``
                (``.npz`` bytes), ``error``, ``environment``, ``started_at``,
                ``finished_at``, ``duration_s``.

        Returns:
            ``False`` when the claim was lost (then nothing is written).
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE runs SET status = ?, metrics = ?, history = ?, arrays = ?, error = ?, "
                "environment = ?, started_at = ?, finished_at = ?, duration_s = ?, "
                "lease_until = NULL WHERE id = ? AND owner = ? AND status = 'running'",
                (
                    result["status"],
                    _json(result.get("metrics")),
                    _json(result.get("history")),
                    result.get("arrays"),
                    result.get("error"),
                    _json(result.get("environment")),
                    result.get("started_at"),
                    result.get("finished_at"),
                    result.get("duration_s"),
                    rid,
                    owner,
                ),
            )
        return cursor.rowcount == 1

    # ------------------------------------------------------------ reading

    def runs(self, study: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Runs (of one study, in study order, or all), without their prediction arrays."""
        columns = (
            "r.id, r.config, r.description, r.status, r.owner, r.attempts, r.metrics, r.history, "
            "r.error, r.environment, r.created_at, r.started_at, r.finished_at, r.duration_s"
        )
        if study is None:
            query = f"SELECT {columns} FROM runs r WHERE 1 = 1"
            args: list[Any] = []
        else:
            query = (
                f"SELECT {columns} FROM study_runs sr JOIN runs r ON r.id = sr.run_id "
                "WHERE sr.study = ?"
            )
            args = [study]
        if status is not None:
            query += " AND r.status = ?"
            args.append(status)
        query += " ORDER BY sr.position" if study is not None else " ORDER BY r.created_at, r.id"
        return [self._row(row) for row in self._read(query, args)]

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in ("config", "metrics", "history", "environment"):
            out[key] = None if out[key] is None else json.loads(out[key])
        return out

    def get(self, rid: str) -> dict[str, Any]:
        """One run by id or unique id prefix (with its study names).

        Raises:
            KeyError: when no run, or more than one, matches.
        """
        rows = self._read(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
            (rid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        )
        if len(rows) != 1:
            reason = "no run" if not rows else "more than one run"
            raise KeyError(f"{reason} with id {rid!r} in {self.path}")
        full = rows[0]["id"]
        (row,) = self._read(
            "SELECT id, config, description, status, owner, attempts, metrics, history, error, "
            "environment, created_at, started_at, finished_at, duration_s FROM runs WHERE id = ?",
            (full,),
        )
        out = self._row(row)
        studies = self._read(
            "SELECT study FROM study_runs WHERE run_id = ? ORDER BY study", (full,)
        )
        out["studies"] = [s["study"] for s in studies]
        return out

    def arrays(self, rid: str) -> dict[str, np.ndarray]:
        """The prediction arrays of a finished run (empty if it has none)."""
        rows = self._read("SELECT arrays FROM runs WHERE id = ?", (rid,))
        if not rows or rows[0]["arrays"] is None:
            return {}
        with np.load(io.BytesIO(rows[0]["arrays"])) as npz:
            return {key: npz[key] for key in npz.files}

    def integrity(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` for a healthy file)."""
        return str(self._read("PRAGMA integrity_check")[0][0])
