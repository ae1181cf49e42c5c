"""Look at a control plane's store file from outside the server, as a test's last word."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def integrity(data_dir: Path) -> str:
    """Return SQLite's own verdict (`PRAGMA integrity_check`) on a data dir's database file."""
    with closing(sqlite3.connect(Path(data_dir) / "tether.db")) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
