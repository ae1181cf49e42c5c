"""Look at a control plane's database from outside the API, as a test's last word."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from flask import Flask

from control_plane.store.copy import TABLES
from control_plane.store.db import write_transaction


def integrity(data_dir: Path) -> str:
    """Return SQLite's own verdict (`PRAGMA integrity_check`) on a data dir's database file."""
    with closing(sqlite3.connect(Path(data_dir) / "tether.db")) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def change_rows(app: Flask, sql: str, params: Sequence[Any] = ()) -> None:
    """Change rows behind the API's back, on whichever database the app uses."""
    db = app.extensions["tether"].database
    with write_transaction(db):
        db.execute(sql, params)


def every_row(app: Flask) -> str:
    """Every row of every table, as text: what a database dump would show."""
    db = app.extensions["tether"].database
    lines = []
    for table in TABLES:
        lines += [repr(row) for row in db.execute(f"SELECT * FROM {table}").fetchall()]
    return "\n".join(lines)
