"""Decide how an operator's request changes one model's desired entry, and whether it may.

The checks are shared by the REST API and the dashboard's actions, so both refuse alike.
"""

from __future__ import annotations

from common.names import check_name
from common.schemas import SHADOW_DIFFERS, DesiredModel, DesiredModelUpdate
from control_plane.store import Store
from control_plane.store.errors import InvalidChange, RecordMissing, StateConflict


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


def check_environment(store: Store, env: str) -> str:
    """Return `env` if it names an environment; refuse a bad name or an unknown one."""
    check_name(env, "environment name")
    if store.environments.revision(env) is None:
        raise RecordMissing(f"environment {env!r} not found")
    return env


def check_model_action(store: Store, env: str, model: str) -> None:
    """Refuse an action on an unknown environment or model, or on a bad name."""
    check_environment(store, env)
    check_name(model, "model name")
    if not store.registry.model_exists(model):
        raise RecordMissing(f"model {model!r} not found")


def check_update(store: Store, model: str, update: DesiredModelUpdate) -> None:
    """Refuse an update naming the same shadow as version, or a version that does not exist."""
    if update.shadow is not None and update.shadow == update.version:
        raise InvalidChange(
            SHADOW_DIFFERS, details=[{"field": "shadow", "message": "equals version"}]
        )
    wanted = [update.version] + ([update.shadow] if update.shadow is not None else [])
    if not store.registry.model_exists(model):
        raise RecordMissing(f"model {model!r} not found")
    missing = sorted(set(wanted) - store.registry.existing_versions(model, wanted))
    if missing:
        raise RecordMissing(
            f"model {model!r} has no version {', '.join(map(str, missing))}",
            details={"missing_versions": missing},
        )
