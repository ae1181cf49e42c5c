"""Copy a whole store from one database to another: how a growing user moves to PostgreSQL.

The target must be migrated and empty, so nothing there is overwritten; the source is read
inside one write transaction, so the copy is a consistent snapshot and a server still running
on it cannot slip a write in between tables. Rows keep their ids (history, events and webhook
deliveries refer to each other by id), identity counters move past them on PostgreSQL, and the
row counts of both sides are compared before the copy commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from control_plane.store.db import Database, write_transaction
from control_plane.store.migrations import migrations

# Every table the store keeps, in an order that satisfies each foreign key, with the columns
# that order its rows.
TABLES: dict[str, str] = {
    "models": "name",
    "versions": "model, version",
    "environments": "name",
    "desired": "environment, model",
    "history": "id",
    "tokens": "id",
    "agents": "id",
    "reports": "id",
    "events": "id",
    "blocked_versions": "environment, model, version",
    "webhook_deliveries": "id",
}
IDENTITY_TABLES = ("history", "events", "webhook_deliveries")
BATCH_ROWS = 1000


class CopyRefused(RuntimeError):
    """The copy cannot start, or its counts did not match: nothing was written."""


@dataclass(frozen=True)
class TableCopied:
    table: str
    source_rows: int
    target_rows: int


def count_rows(db: Database) -> dict[str, int]:
    return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}


def copy_store(
    source: Database,
    target: Database,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> list[TableCopied]:
    """Copy every table from `source` into the empty, migrated `target`; verify the counts."""
    migrations.check(source, "tether server migrate --database-url SOURCE (on the source)")
    migrations.apply(target)
    occupied = {table: rows for table, rows in count_rows(target).items() if rows}
    if occupied:
        names = ", ".join(f"{table} ({rows} rows)" for table, rows in occupied.items())
        raise CopyRefused(f"the target database is not empty: {names}; copy into an empty one")
    with write_transaction(source), write_transaction(target):
        for table, order in TABLES.items():
            _copy_table(source, target, table, order, progress)
        if target.dialect == "postgresql":
            for table in IDENTITY_TABLES:
                target.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
                )
        before, after = count_rows(source), count_rows(target)
        copied = [TableCopied(table, before[table], after[table]) for table in TABLES]
        wrong = [item for item in copied if item.source_rows != item.target_rows]
        if wrong:  # raising rolls the target back: it is left as empty as it was
            names = ", ".join(f"{i.table} {i.source_rows} -> {i.target_rows}" for i in wrong)
            raise CopyRefused(f"row counts differ after the copy ({names}); nothing was kept")
    return copied


def _copy_table(
    source: Database,
    target: Database,
    table: str,
    order: str,
    progress: Callable[[str, int], None],
) -> None:
    offset, done = 0, 0
    while True:
        rows = source.execute(
            f"SELECT * FROM {table} ORDER BY {order} LIMIT ? OFFSET ?", [BATCH_ROWS, offset]
        )
        columns = [column[0] for column in rows.description]
        batch = rows.fetchall()
        if not batch:
            return
        marks = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        for row in batch:
            target.execute(insert, list(row))
        offset += len(batch)
        done += len(batch)
        progress(table, done)
