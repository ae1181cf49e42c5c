"""Back up the embedded SQLite store while the server keeps serving.

SQLite's online backup API copies pages under its own locking, so the copy is one consistent
state of the database even with writers running; a plain `cp` of a WAL database is not.
PostgreSQL has its own tools (`pg_dump`): docs/scale-out.md.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from control_plane.store.sqlite import connect

PAGES_PER_STEP = 1024  # writers get the lock back between steps


class BackupFailed(RuntimeError):
    """The backup could not be written, or did not check out."""


def backup_sqlite(database: Path, out: Path) -> int:
    """Write a consistent copy of `database` to `out` (which must not exist); return its size."""
    if not database.exists():
        raise BackupFailed(f"no database at {database}")
    if out.exists():
        raise BackupFailed(f"{out} exists already: name a new file")
    if not out.parent.is_dir():
        raise BackupFailed(f"no directory {out.parent} to write the backup in")
    partial = out.with_name(f".{out.name}.partial")
    try:
        with closing(connect(database)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy, pages=PAGES_PER_STEP)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupFailed(f"the copy failed its integrity check: {verdict}")
        os.chmod(partial, 0o600)  # it holds token hashes and the whole registry
        os.replace(partial, out)
    except sqlite3.Error as error:
        raise BackupFailed(f"backup failed: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return out.stat().st_size
