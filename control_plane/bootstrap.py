"""Prepare a control plane on start: database, artifact folders, keys, the first admin token.

On the embedded default (SQLite in the data dir) a start does everything: it migrates, sweeps
uploads a crash cut off, and makes the first admin token. On PostgreSQL, where replicas share
the database, a start only checks: `tether server migrate` (`migrate` below) changes the schema
and makes the first token, once, and a replica meeting a schema it does not know refuses to
start, so replicas never race to migrate.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from common.files import write_secret_file
from common.schemas import Role
from control_plane.artifacts import ArtifactStore, open_artifact_store
from control_plane.keys import KeyRing
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store
from control_plane.store.db import Database, opened, write_transaction
from control_plane.store.migrations import migrations

log = logging.getLogger("tether.control_plane")


def bootstrap(settings: ControlPlaneSettings) -> str | None:
    """Make the data dir ready; return a new admin token if this is the first start."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    artifacts = open_artifact_store(settings)
    artifacts.prepare()  # a bad bucket, endpoint or credentials fail the start, named
    secrets_ready(settings)
    with opened(settings.database) as db:
        if settings.replicated:
            migrations.check(db, migrate_command(settings))
            sweep_artifacts(artifacts, None)
            return None
        db.enable_wal()  # type: ignore[attr-defined]
        migrations.apply(db)
        sweep_artifacts(artifacts, Store.over(db).registry.referenced_digests())
        return first_admin_token(db, settings)


def sweep_artifacts(artifacts: ArtifactStore, referenced: set[str] | None) -> None:
    """Remove what crashes left in the artifact store.

    `referenced` is None where replicas share the database and the store: then another replica
    may be receiving an upload, or keeping one whose version row is about to commit, at this very
    moment. So only temporary uploads older than SAFE_SWEEP_AGE go, and stored artifacts stay
    (one no version references costs space, never correctness; deleting one a replica is just
    registering would lose it). On the embedded default this process is the only writer and
    nothing is in flight at start: everything unreferenced goes.
    """
    if referenced is None:
        removed = artifacts.sweep_uploads(older_than=artifacts.SAFE_SWEEP_AGE)
        if removed:
            log.warning("removed %d upload(s) cut off over a day ago", removed)
        return
    artifacts.sweep_uploads(older_than=0)
    orphans = artifacts.sweep(referenced)
    if orphans:
        log.warning("removed %d artifact(s) of uploads cut off by a crash", len(orphans))


def migrate(settings: ControlPlaneSettings) -> tuple[list[str], str | None]:
    """Apply pending migrations; on an empty database also make the first admin token.

    Returns the migrations applied and the new token (None when tokens existed already).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secrets_ready(settings)
    with opened(settings.database) as db:
        if db.dialect == "sqlite":
            db.enable_wal()  # type: ignore[attr-defined]
        applied = migrations.apply(db)
        return applied, first_admin_token(db, settings)


def first_admin_token(db: Database, settings: ControlPlaneSettings) -> str | None:
    """Make the first admin token when there is no token at all; write it mode 0600."""
    store = Store.over(db)
    with write_transaction(db):
        # Checked inside the write lock, so two processes starting at once make one token.
        if store.tokens.count() > 0:
            return None
        created = store.tokens.insert(Role.admin, description="first admin token")
    write_secret_file(settings.admin_token_path, (created.token + "\n").encode(), overwrite=True)
    return created.token


def secrets_ready(settings: ControlPlaneSettings) -> None:
    """Make the signing key and the session key if they are not there yet."""
    KeyRing(settings.keys_dir).ensure()
    session_key(settings.session_key_path)


def migrate_command(settings: ControlPlaneSettings) -> str:
    return f"tether server migrate --database-url '{settings.database.shown}'"


def session_key(path: Path) -> bytes:
    """Return the key that signs dashboard sessions, made random (mode 0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written aside, then linked into place: of two processes starting at once, one key
        # wins and neither ever reads a half-written file.
        aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_secret_file(aside, (secrets.token_hex(32) + "\n").encode())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    return path.read_text().strip().encode()
