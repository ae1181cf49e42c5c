"""Events the control plane raises on its own, versions it blocked, webhook deliveries."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from common.clock import utcnow
from common.policy import Event
from control_plane.store.db import Database
from control_plane.store.rows import dict_rows, from_json, from_time, to_json, to_time


class EventStore:
    """Record events once per dedupe key; block and unblock versions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self,
        kind: str,
        environment: str,
        model: str,
        message: str,
        *,
        version: int | None = None,
        details: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> int | None:
        """Insert an event inside the caller's transaction; None if its key was recorded before."""
        cursor = self.db.execute(
            """INSERT INTO events (at, kind, environment, model, version, message, details,
               dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING
               RETURNING id""",
            [
                to_time(utcnow()),
                kind,
                environment,
                model,
                version,
                message,
                to_json(details or {}),
                dedupe_key,
            ],
        )
        row = cursor.fetchone()
        return None if row is None else row[0]

    def count(self, kind: str, environment: str, model: str, version: int) -> int:
        """Count the events of one kind about one version of a model in an environment."""
        return self.db.execute(
            "SELECT COUNT(*) FROM events WHERE kind = ? AND environment = ? AND model = ? "
            "AND version = ?",
            [kind, environment, model, version],
        ).fetchone()[0]

    def seen(self, dedupe_key: str) -> bool:
        row = self.db.execute("SELECT 1 FROM events WHERE dedupe_key = ?", [dedupe_key]).fetchone()
        return row is not None

    def list(
        self,
        *,
        environment: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[Event]:
        """Return matching events, newest first."""
        clauses, params = [], []
        if environment is not None:
            clauses.append("environment = ?")
            params.append(environment)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if since is not None:
            clauses.append("at >= ?")
            params.append(to_time(since))
        where = " AND ".join(clauses) or "1 = 1"
        cursor = self.db.execute(
            f"SELECT id, at, kind, environment, model, version, message, details FROM events "
            f"WHERE {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
        return [
            Event(**{**row, "at": from_time(row["at"]), "details": from_json(row["details"])})
            for row in dict_rows(cursor)
        ]

    def block(self, environment: str, model: str, version: int, reason: str) -> None:
        """Mark a version blocked in an environment, inside the caller's transaction."""
        self.db.execute(
            """INSERT INTO blocked_versions (environment, model, version, reason, at)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            [environment, model, version, reason, to_time(utcnow())],
        )

    def unblock(self, environment: str, model: str, version: int) -> bool:
        cursor = self.db.execute(
            "DELETE FROM blocked_versions WHERE environment = ? AND model = ? AND version = ?",
            [environment, model, version],
        )
        return cursor.rowcount == 1

    def blocked(self, environment: str, model: str) -> dict[int, str]:
        """Return the blocked versions of a model in an environment, with the reason."""
        rows = self.db.execute(
            "SELECT version, reason FROM blocked_versions WHERE environment = ? AND model = ?",
            [environment, model],
        ).fetchall()
        return dict(rows)

    def all_blocked(self, environment: str) -> builtins.list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT model, version, reason FROM blocked_versions WHERE environment = ? "
            "ORDER BY model, version",
            [environment],
        )
        return dict_rows(cursor)

    def add_delivery(self, event_id: int, url: str) -> None:
        self.db.execute(
            "INSERT INTO webhook_deliveries (event_id, url, status, next_attempt_at) "
            "VALUES (?, ?, 'pending', ?)",
            [event_id, url, to_time(utcnow())],
        )

    def due_deliveries(self, now: datetime) -> builtins.list[dict[str, Any]]:
        cursor = self.db.execute(
            """SELECT d.id, d.event_id, d.url, d.attempts, e.environment, e.model
               FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
               WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.id""",
            [to_time(now)],
        )
        return dict_rows(cursor)

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        self.db.execute(
            """UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?,
               next_attempt_at = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? END
               WHERE id = ?""",
            [
                status,
                attempts,
                error,
                to_time(next_attempt_at),
                status,
                to_time(utcnow()),
                delivery_id,
            ],
        )

    def deliveries(self, event_id: int) -> builtins.list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT * FROM webhook_deliveries WHERE event_id = ? ORDER BY id", [event_id]
        )
        return dict_rows(cursor)
