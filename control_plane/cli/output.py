"""Print answers for people (aligned tables, short times) or for scripts (the API's JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import BaseModel


def echo_json(data: BaseModel | Any) -> None:
    """Print `data` as the API's JSON, indented."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows as left-aligned columns under upper-case headers."""
    cells = [[str(header).upper() for header in headers]]
    cells += [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    """Print a table, or the `empty` sentence when there are no rows."""
    click.echo(format_table(headers, rows) if rows else empty)


def when(moment: datetime | None) -> str:
    """Format a time in UTC to the second, e.g. 2025-01-31 14:05:09Z."""
    if moment is None:
        return "never"
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """Say how long ago a time was, e.g. 42s ago, 5m ago, 3h ago, 2d ago."""
    if moment is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - _utc(moment)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def size(count: int) -> str:
    """Format a byte count for people, e.g. 12.3 KiB."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def version_label(version: int | None) -> str:
    """Write a version as v3 (or '-' for none)."""
    return "-" if version is None else f"v{version}"


def _utc(moment: datetime) -> datetime:
    # The API sends aware times; treat a naive one as UTC rather than local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
