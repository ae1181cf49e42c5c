"""The embedded default: one SQLite file in WAL mode, one long-lived connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from control_plane.store.db import BUSY_TIMEOUT_MS


def connect(path: str | Path) -> sqlite3.Connection:
    """Open a connection with the settings every connection needs."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL is durable in WAL mode except across a power cut, and much faster than FULL.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SqliteDatabase:
    """Hand each thread its own connection: opening one per request costs too much."""

    dialect = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            with self._lock:
                self._all.append(conn)
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executescript(self, sql: str) -> None:
        """Run several statements inside the open transaction.

        sqlite3's own executescript() commits first, which would split a migration in two.
        """
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self.conn.execute(statement)
                statement = ""
        if statement.strip():
            self.conn.execute(statement)

    def enable_wal(self) -> None:
        self.conn.execute("PRAGMA journal_mode = WAL")

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def rollback(self) -> None:
        self.conn.rollback()

    def notify(self, channel: str, payload: str) -> None:
        """Nothing to send: one machine's workers see a change at their next check."""

    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[SqliteDatabase]:
        # One writer at a time whatever `exclusive` says: that is how SQLite writes.
        conn = self.conn
        if conn.in_transaction:
            name = f"nested_{id(object())}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads, then
        # writes, fails with SQLITE_BUSY when another writer committed in between.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
