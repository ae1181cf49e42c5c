"""Decide how an operator's request changes one model's desired entry."""

from __future__ import annotations

from common.schemas import DesiredModel
from control_plane.store.errors import StateConflict


def set_entry(version: int, shadow: int | None):
    """Make `version` primary with `shadow` beside it, remembering the old primary."""

    def change(before: DesiredModel | None, previous: int | None):
        new_previous = before.version if before and before.version != version else previous
        return DesiredModel(version=version, shadow=shadow), new_previous

    return change


def remove_entry(before: DesiredModel | None, previous: int | None):
    """Stop deploying the model in this environment."""
    return None, None


def promote(before: DesiredModel | None, previous: int | None):
    """Make the shadow the primary; the old primary becomes the rollback target."""
    if before is None or before.shadow is None:
        raise StateConflict("no shadow version to promote")
    return DesiredModel(version=before.shadow, shadow=None), before.version


def rollback(before: DesiredModel | None, previous: int | None):
    """Restore the previous primary, dropping any shadow."""
    if before is None or previous is None:
        raise StateConflict("no previous primary version to roll back to")
    return DesiredModel(version=previous, shadow=None), before.version
