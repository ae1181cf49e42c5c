"""Turn JSON columns and timestamps to and from their text form (the same on both engines)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, overload

from control_plane.store.db import Rows


def to_json(value: Any) -> str | None:
    """Serialise a JSON column; None stays NULL."""
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def from_json(text: str | None) -> Any:
    """Read a JSON column; NULL reads as None."""
    return None if text is None else json.loads(text)


@overload
def to_time(value: datetime) -> str: ...
@overload
def to_time(value: None) -> None: ...
@overload
def to_time(value: datetime | None) -> str | None: ...
def to_time(value: datetime | None) -> str | None:
    """Store a timestamp as ISO 8601 text, which sorts in time order."""
    return None if value is None else value.isoformat()


@overload
def from_time(text: str) -> datetime: ...
@overload
def from_time(text: None) -> None: ...
@overload
def from_time(text: str | None) -> datetime | None: ...
def from_time(text: str | None) -> datetime | None:
    """Read an ISO 8601 timestamp column."""
    return None if text is None else datetime.fromisoformat(text)


def dict_rows(cursor: Rows) -> list[dict[str, Any]]:
    """Fetch a cursor's rows as dicts keyed by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
