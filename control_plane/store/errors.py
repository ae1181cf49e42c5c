"""What the store refuses; the API layer turns these into HTTP errors."""

from __future__ import annotations


class StoreError(Exception):
    """The store refused a change."""


class RecordMissing(StoreError):
    """A record the change needs does not exist."""


class RevisionMismatch(StoreError):
    """The caller's expected revision is not the current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"revision {expected} is stale; the current revision is {current}")
        self.expected = expected
        self.current = current


class StateConflict(StoreError):
    """The change makes no sense in the current state."""
