"""Agents' reports, stored once per report id."""

from __future__ import annotations

import json
from datetime import datetime

from common.clock import utcnow
from common.reports import Report, StoredReport
from control_plane.store.db import Database, write_transaction
from control_plane.store.rows import to_time

INSERT_CHUNK = 100  # reports per INSERT: 1,200 parameters, far below either engine's limit
ROW = "(" + ", ".join(["?"] * 12) + ")"


def _row(report: Report, agent_id: str, environment: str, now: str) -> list[object]:
    return [
        report.id,
        agent_id,
        environment,
        report.model,
        report.version,
        report.shadow_version,
        report.kind,
        to_time(report.window_start),
        to_time(report.window_end),
        report.requests,
        now,
        report.model_dump_json(),
    ]


class ReportStore:
    """Store report batches idempotently and query them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_batch(
        self, agent_id: str, environment: str, reports: list[Report]
    ) -> tuple[list[str], list[str]]:
        """Store each report not seen before; return (stored ids, duplicate ids)."""
        now = to_time(utcnow())
        inserted: set[str] = set()
        # Reports have their own ids and ON CONFLICT settles a race on one, so no exclusive
        # lock; and a chunk of reports is one statement, one round trip to the database.
        with write_transaction(self.db, exclusive=False) as db:
            for first in range(0, len(reports), INSERT_CHUNK):
                chunk = reports[first : first + INSERT_CHUNK]
                rows = ", ".join([ROW] * len(chunk))
                cursor = db.execute(
                    f"""INSERT INTO reports (id, agent_id, environment, model, version,
                       shadow_version, kind, window_start, window_end, requests, received_at, body)
                       VALUES {rows} ON CONFLICT(id) DO NOTHING RETURNING id""",
                    [
                        value
                        for report in chunk
                        for value in _row(report, agent_id, environment, now)
                    ],
                )
                inserted.update(row[0] for row in cursor.fetchall())
        stored: list[str] = []
        duplicates: list[str] = []
        for report in reports:
            # A report sent twice in one batch is stored once: its first copy.
            if report.id in inserted:
                inserted.discard(report.id)
                stored.append(report.id)
            else:
                duplicates.append(report.id)
        return stored, duplicates

    def query(
        self,
        *,
        environment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        agent_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[StoredReport]:
        """Return matching reports, oldest window first."""
        clauses, params = [], []
        for column, value in (
            ("environment", environment),
            ("model", model),
            ("version", version),
            ("agent_id", agent_id),
            ("kind", kind),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("window_end >= ?")
            params.append(to_time(since))
        where = " AND ".join(clauses) or "1 = 1"
        rows = self.db.execute(
            f"SELECT agent_id, environment, received_at, body FROM reports WHERE {where} "
            "ORDER BY window_end, id LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [
            StoredReport(
                **json.loads(body),
                agent_id=agent_id,
                environment=env,
                received_at=datetime.fromisoformat(received),
            )
            for agent_id, env, received, body in rows
        ]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
