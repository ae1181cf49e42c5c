"""Numbered schema migrations, applied in order when the store opens."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("tether")


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE models (
            name TEXT PRIMARY KEY,
            last_version INTEGER NOT NULL DEFAULT 0,  -- versions are never reused
            created_at TEXT NOT NULL
        );
        CREATE TABLE versions (
            model TEXT NOT NULL REFERENCES models(name),
            version INTEGER NOT NULL,
            artifact_sha256 TEXT NOT NULL,
            artifact_size INTEGER NOT NULL,
            format TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            metrics TEXT NOT NULL DEFAULT '{}',
            params TEXT NOT NULL DEFAULT '{}',
            tags TEXT NOT NULL DEFAULT '{}',
            code_revision TEXT,
            training_data_fingerprint TEXT,
            input_schema TEXT,
            input_example TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (model, version)
        );
        CREATE TABLE environments (
            name TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            revision INTEGER NOT NULL DEFAULT 0,
            policy TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE desired (
            environment TEXT NOT NULL REFERENCES environments(name),
            model TEXT NOT NULL REFERENCES models(name),
            version INTEGER NOT NULL,
            shadow INTEGER,
            previous_version INTEGER,
            PRIMARY KEY (environment, model)
        );
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            environment TEXT NOT NULL REFERENCES environments(name),
            revision INTEGER NOT NULL,
            model TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL,
            before TEXT,
            after TEXT,
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX history_by_environment ON history(environment, id);
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            environment TEXT,
            agent_id TEXT,
            expires_at TEXT,
            uses_left INTEGER,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            environment TEXT NOT NULL REFERENCES environments(name),
            hostname TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            agent_version TEXT NOT NULL DEFAULT '',
            enrolled_at TEXT NOT NULL,
            last_seen TEXT,
            applied_revision INTEGER NOT NULL DEFAULT 0,
            models TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX agents_by_environment ON agents(environment);
        """
    )
