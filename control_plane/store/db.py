"""The database a store speaks to: SQLite (the embedded default) or PostgreSQL, one interface.

Store code writes SQL once, in the subset both engines share, with `?` placeholders, and calls
`db.execute(sql, params)`. A `Database` is shared by every thread of a process:

- outside a transaction, each statement runs on its own (autocommit) and returns its rows;
- `write_transaction(db)` runs a block as one transaction on one connection pinned to the
  calling thread; nested, it becomes a savepoint of the outer one.

Write transactions are serialised, on both engines, so a block may read, then write what it
read, with no lost update: SQLite takes its write lock up front (`BEGIN IMMEDIATE`), PostgreSQL
a transaction-scoped advisory lock. A block whose writes cannot conflict with another's (one
agent's heartbeat, reports with their own ids) passes `exclusive=False` and takes only the row
locks PostgreSQL takes anyway.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BUSY_TIMEOUT_MS = 10_000


class Rows(Protocol):
    """What a statement returns: its rows, their column names, how many rows it changed."""

    @property
    def description(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """A store's connection to its database, safe to share between threads."""

    dialect: str  # "sqlite" or "postgresql"
    url: str
    # The driver's errors, for callers that answer a failing database rather than raise.
    errors: tuple[type[BaseException], ...]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...
    def executescript(self, sql: str) -> None: ...
    def transaction(self, exclusive: bool) -> AbstractContextManager[Database]: ...
    @property
    def in_transaction(self) -> bool: ...
    def rollback(self) -> None: ...
    def notify(self, channel: str, payload: str) -> None:
        """Tell other processes on this database that something changed, when it commits."""
        ...

    def close(self) -> None: ...


def write_transaction(db: Database, *, exclusive: bool = True) -> AbstractContextManager[Database]:
    """Run a block as one write transaction (a savepoint when one is open already)."""
    return db.transaction(exclusive)


class BadDatabaseUrl(ValueError):
    """A database URL Tether cannot open."""


class DatabaseUnavailable(RuntimeError):
    """The database named cannot be reached or opened."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed `sqlite:///path` or `postgresql://user@host:port/db` URL."""

    dialect: str
    url: str
    path: Path | None = None  # SQLite only

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        scheme, sep, rest = url.partition("://")
        if scheme == "sqlite" and sep:
            # As in SQLAlchemy: sqlite:///relative/tether.db, sqlite:////absolute/tether.db.
            if not rest.startswith("/") or rest == "/":
                raise BadDatabaseUrl(
                    f"{url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
                )
            return cls("sqlite", url, Path(rest[1:]))
        if scheme in ("postgresql", "postgres") and sep:
            if not rest or (rest.startswith("/") and len(rest) == 1):
                raise BadDatabaseUrl(f"{url!r}: name a host or a database")
            return cls("postgresql", url)
        raise BadDatabaseUrl(f"{url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")

    @classmethod
    def for_file(cls, path: Path) -> DatabaseUrl:
        absolute = path.absolute()
        return cls("sqlite", f"sqlite:///{absolute}", absolute)

    @property
    def shown(self) -> str:
        """The URL with any password masked, for logs and messages."""
        if self.dialect != "postgresql" or "@" not in self.url:
            return self.url
        scheme, _, rest = self.url.partition("://")
        credentials, _, host = rest.rpartition("@")
        user, _, password = credentials.partition(":")
        return f"{scheme}://{user}{':***' if password else ''}@{host}"


def open_database(url: DatabaseUrl, *, pool_size: int = 8) -> Database:
    """Open the database a URL names (PostgreSQL's driver is imported only when asked for)."""
    if url.dialect == "sqlite":
        from control_plane.store.sqlite import SqliteDatabase

        assert url.path is not None
        return SqliteDatabase(url.path)
    from control_plane.store.postgres import PostgresDatabase

    return PostgresDatabase(url.url, pool_size=pool_size)


@contextmanager
def opened(url: DatabaseUrl, *, pool_size: int = 2) -> Iterator[Database]:
    """Open a database for one command's use and close it afterwards.

    PostgreSQL is tried with one plain connection first, so an unreachable server fails in
    seconds with the driver's reason rather than after the pool's wait.
    """
    if url.dialect == "postgresql":
        from control_plane.store.postgres import check_connects

        check_connects(url)
    db = open_database(url, pool_size=pool_size)
    try:
        yield db
    finally:
        db.close()
