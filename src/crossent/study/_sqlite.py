"""Opening the store's SQLite file, and its failures as one line naming the file.

Every problem with the file itself — not a database, damaged pages, a full disk, a read-only
file, folder or file system, a missing folder — becomes a :class:`StoreError` whose message is
``"<path>: <cause>"``, so the command line can print it as one ``Error:`` line.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

#: SQLite's message -> what it means for a study store.
_CAUSES = {
    "file is not a database": "not a SQLite database (a different or a damaged file)",
    "database disk image is malformed": "the store is damaged (database disk image is malformed)",
    "database or disk is full": "the disk is full (database or disk is full)",
    "attempt to write a readonly database": "the file is read-only",
    "no such table": "not a crossent study store",
}


class StoreError(RuntimeError):
    """The store file cannot be used; the message is ``"<path>: <cause>"``.

    Attributes:
        path: the database file.
        cause: one line saying why.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


def _unopenable(path: Path) -> str:
    """Why SQLite could not open (or create) ``path``, as far as the file system tells."""
    folder = path.parent
    if not folder.is_dir():
        return f"cannot open it: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"cannot open it: the folder {folder} is not writable (or on a read-only disk)"
    if path.exists() and not os.access(path, os.W_OK):
        return "cannot open it: the file is read-only"
    return "cannot open it (unable to open database file)"


def describe(err: BaseException, path: Path) -> str:
    """One line saying what a SQLite or OS error means for the store at ``path``."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = str(err)
    if text.startswith("unable to open database file"):
        return _unopenable(path)
    for prefix, cause in _CAUSES.items():
        if text.startswith(prefix):
            return cause if prefix != "no such table" else f"{cause} ({text})"
    return text


@contextlib.contextmanager
def translated(path: Path) -> Iterator[None]:
    """Turn ``sqlite3.Error`` and ``OSError`` raised inside into a :class:`StoreError`."""
    try:
        yield
    except (sqlite3.Error, OSError) as err:
        raise StoreError(path, describe(err, path)) from err


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Open (or create) ``path`` for reading and writing, in autocommit mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def use_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Switch ``db`` to write-ahead logging, waiting up to ``timeout`` seconds for the file.

    Changing the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once, without the busy handler, while another connection holds it (two
    runners opening a new store at the same moment): so the change is retried until then.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "database is locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """Open an existing ``path`` without ever writing to it or next to it.

    ``mode=ro`` first. A store in WAL mode needs its ``-shm`` file, which SQLite cannot
    create on a read-only file system or in a read-only folder ("unable to open database
    file", or ``SQLITE_READONLY_DIRECTORY`` "attempt to write a readonly database"); there the
    file is opened with ``immutable=1`` (nobody can change it while it cannot be written).
    """
    if not path.is_file():
        raise StoreError(path, "no such file")
    uri = path.resolve().as_uri()
    try:
        return _probe(uri + "?mode=ro", timeout)
    except sqlite3.OperationalError as err:
        if "unable to open" not in str(err) and "readonly" not in str(err):
            raise
    return _probe(uri + "?mode=ro&immutable=1", timeout)


def _probe(uri: str, timeout: float) -> sqlite3.Connection:
    """Connect to ``uri`` and read the schema once (SQLite opens files lazily)."""
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's ``PRAGMA quick_check`` in one line, or ``None`` when the file is healthy."""
    rows = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
    if rows == ["ok"]:
        return None
    lines = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
    more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
    return f"the store is damaged: {lines[0] if lines else 'quick_check failed'}{more}"
