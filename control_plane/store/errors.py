"""What the store and the decisions refuse; control_plane.errors maps each to its status."""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """The store refused a change; `details` says more, for the caller to show."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class RecordMissing(StoreError):
    """A record the change needs does not exist."""


class RevisionMismatch(StoreError):
    """The caller's expected revision is not the current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"revision {expected} is stale; the current revision is {current}",
            details={"current_revision": current},
        )
        self.expected = expected
        self.current = current


class StateConflict(StoreError):
    """The change makes no sense in the current state."""


class InvalidChange(StoreError):
    """The change contradicts itself (a field against another), whatever the state."""
