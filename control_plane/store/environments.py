"""Environments, their desired state, revisions and audit history."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from common.clock import utcnow
from common.schemas import DesiredModel, DesiredState, Environment, HistoryEntry
from control_plane.store.db import Database, write_transaction
from control_plane.store.errors import RecordMissing, RevisionMismatch, StateConflict
from control_plane.store.rows import dict_rows, from_json, from_time, to_json, to_time

# Given the model's current desired entry (or None) and its previous primary, return the new
# entry (None removes the model) and the previous primary to remember.
Change = Callable[[DesiredModel | None, int | None], tuple[DesiredModel | None, int | None]]

# The channel a desired-state change is announced on (payload: the environment's name), so
# long-polls held by other replicas wake at once: control_plane/change_feed.py.
DESIRED_CHANGED = "tether_desired_changed"


# The conditional poll's read of environment `e`: its revision, when it changed, and whether an
# agent lags. EXISTS on the (environment, applied_revision) index stops at the first lagging
# agent, so a poll costs the same with ten agents or ten thousand.
POLL_STATE_COLUMNS = """e.revision, e.updated_at,
    EXISTS (SELECT 1 FROM agents a WHERE a.environment = e.name
     AND a.applied_revision < e.revision), e.manifest_ttl"""


class PollState(NamedTuple):
    """What a poll is answered from: the revision, and what the hint and manifest need."""

    revision: int
    updated_at: datetime
    lagging: bool  # whether an agent has not applied the revision yet
    manifest_ttl: int


def poll_state_from(row: Sequence[Any]) -> PollState:
    """Read POLL_STATE_COLUMNS out of a row."""
    revision, updated_at, lagging, manifest_ttl = row
    return PollState(revision, from_time(updated_at), bool(lagging), manifest_ttl)


class EnvironmentStore:
    """Read and change environments and their desired state."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, name: str, description: str | None, manifest_ttl: int | None = None
    ) -> tuple[Environment, bool]:
        """Create an environment, or update what is given; return it and whether it is new."""
        now = to_time(utcnow())
        with write_transaction(self.db) as db:
            cursor = db.execute(
                "INSERT INTO environments (name, description, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                [name, description or "", now, now],
            )
            created = cursor.rowcount == 1
            if not created and description is not None:
                db.execute(
                    "UPDATE environments SET description = ? WHERE name = ?", [description, name]
                )
            if manifest_ttl is not None:
                db.execute(
                    "UPDATE environments SET manifest_ttl = ? WHERE name = ?", [manifest_ttl, name]
                )
        found = self.get(name)
        assert found is not None
        return found, created

    def list(self) -> list[Environment]:
        cursor = self.db.execute("SELECT * FROM environments ORDER BY name")
        return [_environment(row) for row in dict_rows(cursor)]

    def get(self, name: str) -> Environment | None:
        rows = dict_rows(self.db.execute("SELECT * FROM environments WHERE name = ?", [name]))
        return _environment(rows[0]) if rows else None

    def revision(self, name: str) -> int | None:
        """Return the environment's revision: the cheap check behind every conditional poll."""
        row = self.db.execute("SELECT revision FROM environments WHERE name = ?", [name]).fetchone()
        return None if row is None else row[0]

    def policy(self, name: str) -> dict | None:
        """Return the environment's policy document as stored (None: no such environment)."""
        row = self.db.execute("SELECT policy FROM environments WHERE name = ?", [name]).fetchone()
        return None if row is None else from_json(row[0])

    def set_policy(self, name: str, policy: dict) -> None:
        with write_transaction(self.db) as db:
            db.execute("UPDATE environments SET policy = ? WHERE name = ?", [to_json(policy), name])

    def poll_state(self, environment: str) -> PollState | None:
        """Return (revision, updated_at, whether an agent lags): the conditional poll's read."""
        row = self.db.execute(
            f"SELECT {POLL_STATE_COLUMNS} FROM environments e WHERE e.name = ?", [environment]
        ).fetchone()
        return None if row is None else poll_state_from(row)

    def desired(self, name: str) -> DesiredState | None:
        revision = self.revision(name)
        if revision is None:
            return None
        rows = self.db.execute(
            "SELECT model, version, shadow FROM desired WHERE environment = ? ORDER BY model",
            [name],
        ).fetchall()
        return DesiredState(
            environment=name,
            revision=revision,
            models={model: DesiredModel(version=v, shadow=s) for model, v, s in rows},
        )

    def change(
        self,
        environment: str,
        model: str,
        change: Change,
        *,
        action: str,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
    ) -> DesiredState:
        """Apply `change` to one model's desired entry, bump the revision and log it, atomically."""
        with write_transaction(self.db) as db:
            row = db.execute(
                "SELECT revision FROM environments WHERE name = ?", [environment]
            ).fetchone()
            if row is None:
                raise RecordMissing(f"environment {environment!r} not found")
            current_revision = row[0]
            if expected_revision is not None and expected_revision != current_revision:
                raise RevisionMismatch(expected_revision, current_revision)
            entry = db.execute(
                "SELECT version, shadow, previous_version FROM desired "
                "WHERE environment = ? AND model = ?",
                [environment, model],
            ).fetchone()
            before = None if entry is None else DesiredModel(version=entry[0], shadow=entry[1])
            previous = None if entry is None else entry[2]
            after, new_previous = change(before, previous)
            if after == before:
                raise StateConflict(f"{model} in {environment} is already in that state")
            revision = current_revision + 1
            now = to_time(utcnow())
            if after is None:
                db.execute(
                    "DELETE FROM desired WHERE environment = ? AND model = ?", [environment, model]
                )
            else:
                db.execute(
                    """INSERT INTO desired (environment, model, version, shadow, previous_version)
                       VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(environment, model) DO UPDATE SET version = excluded.version,
                       shadow = excluded.shadow, previous_version = excluded.previous_version""",
                    [environment, model, after.version, after.shadow, new_previous],
                )
            db.execute(
                "UPDATE environments SET revision = ?, updated_at = ? WHERE name = ?",
                [revision, now, environment],
            )
            db.notify(DESIRED_CHANGED, environment)
            db.execute(
                """INSERT INTO history (environment, revision, model, action, actor, at, before,
                   after, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    environment,
                    revision,
                    model,
                    action,
                    actor,
                    now,
                    to_json(before and before.model_dump()),
                    to_json(after and after.model_dump()),
                    reason,
                ],
            )
        state = self.desired(environment)
        assert state is not None
        return state

    def last_change(self, environment: str, model: str) -> HistoryEntry | None:
        """Return the newest history entry of one model in an environment."""
        cursor = self.db.execute(
            "SELECT * FROM history WHERE environment = ? AND model = ? ORDER BY id DESC LIMIT 1",
            [environment, model],
        )
        rows = dict_rows(cursor)
        return _history_entry(rows[0]) if rows else None

    def history(
        self, environment: str, *, limit: int = 100, before_id: int | None = None
    ) -> builtins.list[HistoryEntry]:
        """Return the newest history entries first."""
        cursor = self.db.execute(
            "SELECT * FROM history WHERE environment = ? AND id < ? ORDER BY id DESC LIMIT ?",
            [environment, before_id if before_id is not None else 2**62, limit],
        )
        return [_history_entry(row) for row in dict_rows(cursor)]


def _history_entry(row: dict) -> HistoryEntry:
    return HistoryEntry(
        **{
            **row,
            "at": from_time(row["at"]),
            "before": from_json(row["before"]),
            "after": from_json(row["after"]),
        }
    )


def _environment(row: dict) -> Environment:
    return Environment(
        name=row["name"],
        description=row["description"],
        revision=row["revision"],
        manifest_ttl=row["manifest_ttl"],
        created_at=from_time(row["created_at"]),
        updated_at=from_time(row["updated_at"]),
    )
