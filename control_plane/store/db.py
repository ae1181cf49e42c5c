"""Open the SQLite store: WAL, foreign keys, migrations, one connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from control_plane.store.migrations import migrations

BUSY_TIMEOUT_MS = 10_000


def connect(path: str | Path) -> Database:
    """Open a connection with the settings every connection needs."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    db = Database(conn, execute_plugins=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    # NORMAL is durable in WAL mode except across a power cut, and much faster than FULL.
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def initialise(path: str | Path) -> None:
    """Create or upgrade the database file: WAL on, pending migrations applied."""
    db = connect(path)
    try:
        db.enable_wal()
        migrations.apply(db)
    finally:
        db.close()


@contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """Run a block in one IMMEDIATE transaction, so concurrent writers queue, not fail.

    Inside another write_transaction, the block becomes a savepoint of the outer one.
    """
    if db.conn.in_transaction:
        name = f"nested_{id(object())}"
        db.conn.execute(f"SAVEPOINT {name}")
        try:
            yield db
        except BaseException:
            db.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            db.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        db.conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads, then writes,
    # fails with SQLITE_BUSY when another writer committed in between, whatever the timeout.
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.rollback()
        raise
    else:
        db.conn.commit()


class ConnectionPool:
    """Hand each thread its own long-lived connection; opening one per request costs too much."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[Database] = []
        self._lock = threading.Lock()

    def get(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close_all(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()
