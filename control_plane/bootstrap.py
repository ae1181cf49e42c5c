"""Prepare a data directory on start: database, artifact folders, keys, the first admin token."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from common.files import write_secret_file
from common.schemas import Role
from control_plane.artifacts import ArtifactFiles
from control_plane.keys import KeyRing
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store
from control_plane.store.db import connect, initialise, write_transaction

log = logging.getLogger("tether.control_plane")


def bootstrap(settings: ControlPlaneSettings) -> str | None:
    """Make the data dir ready; return a new admin token if this is the first start."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    initialise(settings.database_path)
    artifacts = ArtifactFiles(settings.artifacts_dir)
    artifacts.prepare()
    KeyRing(settings.keys_dir).ensure()
    session_key(settings.session_key_path)
    db = connect(settings.database_path)
    try:
        store = Store.over(db)
        orphans = artifacts.sweep(store.registry.referenced_digests())
        if orphans:
            log.warning("removed %d artifact file(s) of uploads cut off by a crash", len(orphans))
        with write_transaction(db):
            # Checked inside the write lock, so two processes starting at once make one token.
            if store.tokens.count() > 0:
                return None
            created = store.tokens.insert(Role.admin, description="first admin token")
        write_secret_file(
            settings.admin_token_path, (created.token + "\n").encode(), overwrite=True
        )
        return created.token
    finally:
        db.close()


def session_key(path: Path) -> bytes:
    """Return the key that signs dashboard sessions, made random (mode 0600) on first start."""
    if not path.exists():
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
