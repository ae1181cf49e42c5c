"""Print answers for people (aligned tables, short times) or for scripts (the API's JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from pydantic import BaseModel

from common.display import format_table


def echo_json(data: BaseModel | Any) -> None:
    """Print `data` as the API's JSON, indented."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    """Print a table, or the `empty` sentence when there are no rows."""
    click.echo(format_table(headers, rows) if rows else empty)


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
