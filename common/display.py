"""Text for people, the same on every side: tables, times and ages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows as left-aligned columns under upper-case headers (None shows as '-')."""
    cells = [[str(header).upper() for header in headers]]
    cells += [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def as_utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; a naive time is taken as UTC, never as local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(moment: datetime | None) -> str:
    """Format a time in UTC to the second, e.g. 2025-01-31 14:05:09Z."""
    if moment is None:
        return "never"
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """Say how long ago a time was, e.g. 42s ago, 5m ago, 3h ago, 2d ago."""
    if moment is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - as_utc(moment)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
