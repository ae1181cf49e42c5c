"""The one clock both sides stamp records with."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time in UTC, to the microsecond."""
    return datetime.now(UTC)
