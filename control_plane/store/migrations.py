"""The schema's numbered migrations, written once in SQLite's dialect.

PostgreSQL gets the same statements through `control_plane.store.schema.for_dialect`: integer
columns widen to BIGINT, an `INTEGER PRIMARY KEY` becomes an identity column, and text compares
byte by byte (COLLATE "C"), as SQLite's does, so every ORDER BY sorts alike on both.
"""

from __future__ import annotations

from control_plane.store.db import Database
from control_plane.store.schema import Migrations

migrations = Migrations("tether")


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    db.executescript(
        migrations.sql(
            db,
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
        """,
        )
    )


@migrations(name="0002_reports_events_policies")
def reports_events_policies(db: Database) -> None:
    db.executescript(
        migrations.sql(
            db,
            """
        ALTER TABLE versions ADD COLUMN profile_sha256 TEXT;
        ALTER TABLE versions ADD COLUMN profile_size INTEGER;
        CREATE TABLE reports (
            id TEXT PRIMARY KEY,  -- chosen by the agent: a re-sent report is recognised
            agent_id TEXT NOT NULL,
            environment TEXT NOT NULL,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            shadow_version INTEGER,
            kind TEXT NOT NULL,
            window_start TEXT NOT NULL,
            window_end TEXT NOT NULL,
            requests INTEGER NOT NULL,
            received_at TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX reports_by_scope ON reports(environment, model, kind, window_end);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            environment TEXT NOT NULL,
            model TEXT NOT NULL,
            version INTEGER,
            message TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}',
            dedupe_key TEXT UNIQUE  -- the policy engine acts once per key, however often it runs
        );
        CREATE INDEX events_by_time ON events(environment, id);
        CREATE TABLE blocked_versions (
            environment TEXT NOT NULL,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (environment, model, version)
        );
        CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL REFERENCES events(id),
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,  -- pending, delivered, failed
            last_error TEXT,
            next_attempt_at TEXT,
            delivered_at TEXT
        );
        """,
        )
    )


@migrations(name="0003_signing")
def signing(db: Database) -> None:
    db.executescript(
        migrations.sql(
            db,
            """
        ALTER TABLE environments ADD COLUMN manifest_ttl INTEGER NOT NULL DEFAULT 604800;
        ALTER TABLE agents ADD COLUMN public_key TEXT;  -- verifies the agent's report exports
        ALTER TABLE agents ADD COLUMN last_import TEXT;  -- offline agents: last imported report
        """,
        )
    )


@migrations(name="0004_lagging_agents_index")
def lagging_agents_index(db: Database) -> None:
    db.executescript("CREATE INDEX agents_by_revision ON agents(environment, applied_revision)")
