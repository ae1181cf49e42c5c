"""Reports wait here, in a local SQLite file, until the control plane acknowledges them.

Nothing is lost when the control plane or the network is down, or the agent restarts: a report
leaves the outbox only when its id comes back in an acknowledgement (online, or in an imported
ack file for an air-gapped site). Re-sending is harmless: the control plane stores a report id once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.reports import Report


class Outbox:
    """A durable queue of reports, kept until the control plane acknowledges them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledged-by-us write survives a power cut, not just a crash.
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS reports (id TEXT PRIMARY KEY, created REAL, body TEXT)"
        )

    def put(self, reports: Iterable[Report]) -> int:
        """Store reports durably; return how many were new."""
        rows = [(r.id, time.time(), r.model_dump_json()) for r in reports]
        with self._transaction():
            before = self._count("reports")
            self._db.executemany("INSERT OR IGNORE INTO reports VALUES (?, ?, ?)", rows)
            return self._count("reports") - before

    def pending(self, limit: int = 500) -> list[Report]:
        """Return the oldest reports not yet acknowledged."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM reports ORDER BY created, id LIMIT ?", (limit,)
            ).fetchall()
        return [Report.model_validate_json(body) for (body,) in rows]

    def acknowledge(self, report_ids: Iterable[str]) -> int:
        """Drop acknowledged reports; return how many were removed."""
        ids = [(report_id,) for report_id in report_ids]
        with self._transaction():
            before = self._count("reports")
            self._db.executemany("DELETE FROM reports WHERE id = ?", ids)
            return before - self._count("reports")

    def depth(self) -> int:
        """Return how many reports wait for an acknowledgement."""
        with self._lock:
            return self._count("reports")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Hold the lock over one write transaction, rolled back if any statement fails.

        A failed write (disk full, say) must not leave the transaction open: every later
        write would then fail on BEGIN, long after the disk has room again.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _count(self, table: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
