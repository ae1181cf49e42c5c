"""PostgreSQL, for replicas that share one database: psycopg 3 over a connection pool.

Each thread leases one pooled connection (in autocommit) on its first statement and keeps it
until the thread ends, as each thread keeps its own SQLite connection: taking a connection from
the pool and giving it back around every statement cost about a quarter of a conditional
poll's CPU in the server (measured in process, 300 -> 225 us). The pool is sized to the server's
threads, so a thread that sleeps in a long-poll holding its lease takes nothing from the
others. A write transaction runs on the thread's connection and first takes a
transaction-scoped advisory lock, which serialises write transactions across every replica as
SQLite's write lock does on one machine (see control_plane/store/db.py).

The pool is opened on first use in each process: gunicorn forks its workers after the app is
built, and a connection (or the pool's threads) must never be shared across a fork.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult
from psycopg_pool import ConnectionPool

from control_plane.store.db import BUSY_TIMEOUT_MS, DatabaseUnavailable, DatabaseUrl

# pg_advisory_xact_lock's key for "a Tether write transaction": any fixed 64-bit number.
WRITE_LOCK = 0x7E7E_0001
TUPLES_OK = ExecStatus.TUPLES_OK


@lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """Turn the store's `?` placeholders into psycopg's `%s` (and escape a literal %)."""
    return sql.replace("%", "%%").replace("?", "%s")


@dataclass
class Fetched:
    """A statement's result, read in full before its connection went back to the pool."""

    rowcount: int
    rows: list[Any] = field(default_factory=list)
    # The result's column names are read from it only when asked for: psycopg's own
    # `description` builds a Column per column, a fifth of a conditional poll's CPU.
    result: PGresult | None = None
    _next: int = 0

    @property
    def description(self) -> list[tuple[str]] | None:
        """One (name,) per column, as DB-API's description begins; None for no result rows."""
        result = self.result
        if result is None:
            return None
        return [((result.fname(i) or b"").decode(),) for i in range(result.nfields)]

    def fetchone(self) -> Any:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self.rows[self._next :], len(self.rows)
        return rest


CONNECT_TIMEOUT_S = 5
# The oldest release Tether is tested on (15: Debian 12's package); older ones are refused.
MINIMUM_SERVER_VERSION = 150000


def check_connects(url: DatabaseUrl) -> None:
    """Connect once, or raise DatabaseUnavailable with the server's or the network's reason."""
    try:
        with psycopg.connect(url.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            version = conn.info.server_version
    except psycopg.Error as error:
        reason = " ".join(line.strip() for line in str(error).splitlines()) or repr(error)
        raise DatabaseUnavailable(f"cannot connect to {url.shown}: {reason}") from None
    if version < MINIMUM_SERVER_VERSION:
        raise DatabaseUnavailable(
            f"{url.shown} runs PostgreSQL {version // 10000}.{version % 10000}; Tether needs "
            f"{MINIMUM_SERVER_VERSION // 10000} or newer"
        )


def _configure(conn: psycopg.Connection) -> None:
    # As SQLite's busy timeout: a writer waits this long for the lock, then fails.
    conn.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("SET idle_in_transaction_session_timeout = 60000")


class StoreConnection(psycopg.Connection[Any]):
    """A pooled connection that keeps one cursor for the store's statements.

    A new cursor per statement (its adapters, its transformer) cost about a sixth of a
    conditional poll's CPU in the server. One thread at a time uses a connection, and each
    statement's rows are read in full before the next, so one cursor serves them all.
    """

    _store_cursor: psycopg.Cursor[Any] | None = None

    def store_cursor(self) -> psycopg.Cursor[Any]:
        cursor = self._store_cursor
        if cursor is None or cursor.closed:
            cursor = self._store_cursor = self.cursor()
        return cursor


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, shared by a process's threads."""

    dialect = "postgresql"
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        self.pool_size = max(2, pool_size)
        self._pool: ConnectionPool[StoreConnection] | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._local = threading.local()

    @property
    def pool(self) -> ConnectionPool[StoreConnection]:
        pool = self._pool
        if pool is None or self._pool_pid != os.getpid():
            with self._pool_lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    # A pool inherited across a fork is the parent's: left alone, not closed,
                    # since closing would end the parent's sessions on the shared sockets.
                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True},
                        connection_class=StoreConnection,
                        configure=_configure,
                        name="tether",
                        open=True,
                    )
                    self._pool_pid = os.getpid()
                    self._local = threading.local()
                pool = self._pool
        return pool

    def connection(self) -> StoreConnection:
        """This thread's connection: in a transaction, its one; else the thread's lease."""
        pinned: StoreConnection | None = getattr(self._local, "conn", None)
        if pinned is not None:
            return pinned
        pool = self.pool
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is not None and (lease.conn.broken or lease.conn.closed):
            self._local.lease = lease = None  # its __del__ hands the dead one back
        if lease is None:
            lease = self._local.lease = _Lease(pool, pool.getconn())
        return lease.conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Fetched:
        conn = self.connection()
        try:
            return _run(conn, sql, params)
        except psycopg.OperationalError:
            # The session is gone (server restarted, network cut): the next statement takes
            # a fresh connection; this one fails, as it would have with a pool checkout.
            if not self.in_transaction:
                self._local.lease = None
            raise

    def executescript(self, sql: str) -> None:
        self.connection().execute(sql.encode())

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    def rollback(self) -> None:
        """Nothing to do: a transaction ends with the block that opened it."""

    def notify(self, channel: str, payload: str) -> None:
        # Delivered to every LISTENing session when the transaction commits, never before.
        self.execute("SELECT pg_notify(?, ?)", [channel, payload])

    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[PostgresDatabase]:
        pinned: psycopg.Connection | None = getattr(self._local, "conn", None)
        if pinned is not None:
            with pinned.transaction():  # a savepoint of the open transaction
                yield self
            return
        conn = self.connection()
        self._local.conn = conn
        try:
            with conn.transaction():
                if exclusive:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
                yield self
        except psycopg.OperationalError:
            self._local.lease = None  # a dead session: the next statement takes a fresh one
            raise
        finally:
            self._local.conn = None

    def close(self) -> None:
        with self._pool_lock:
            self._local.lease = None  # this thread's goes back before the pool closes
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None


class _Lease:
    """A pooled connection one thread keeps; handed back when the thread (or this) goes."""

    __slots__ = ("conn", "pool")

    def __init__(self, pool: ConnectionPool[StoreConnection], conn: StoreConnection) -> None:
        self.pool = pool
        self.conn = conn

    def __del__(self) -> None:
        # At interpreter exit the pool may be half torn down: nothing is left to hand back to.
        with contextlib.suppress(Exception):
            self.pool.putconn(self.conn)  # a closed pool closes it; a broken one is replaced


def _run(conn: StoreConnection, sql: str, params: Sequence[Any]) -> Fetched:
    cursor = conn.store_cursor()
    # Without parameters psycopg sends the text as it is, so a literal % stays single.
    if params:
        cursor.execute(placeholders(sql), params)
    else:
        cursor.execute(sql.encode())
    result = cursor.pgresult
    if result is None or result.status != TUPLES_OK:
        return Fetched(cursor.rowcount)
    return Fetched(cursor.rowcount, cursor.fetchall(), result)
