"""What a request reaches for: the app's lifetime state, its settings, this request's store.

Like flaskr's `db.py`, this is the one place that knows how the app keeps its resources: views,
the dashboard, metrics and the scheduler import from here, never from the app factory, so
`create_app` can import them all at the top.
"""

from __future__ import annotations

from typing import cast

from flask import current_app, g

from control_plane.artifacts import ArtifactStore, open_artifact_store
from control_plane.keys import KeyRing
from control_plane.long_poll import WaitRoom
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store
from control_plane.store.db import open_database


class TetherState:
    """What the app holds for its lifetime: settings, the database, the artifact store."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        # One connection per thread at most, and a spare for the policy engine.
        self.database = open_database(settings.database, pool_size=settings.threads + 1)
        self.store = Store.over(self.database)
        # Chosen once: a directory, or an S3 prefix whose client is made on first use.
        self.artifacts: ArtifactStore = open_artifact_store(settings)
        self.keys = KeyRing(settings.keys_dir)
        self.wait_room = WaitRoom(settings.long_poll_capacity)
        self.new_admin_token: str | None = None

    def thread_store(self) -> Store:
        """Return the store: one for the app, safe to share between its threads."""
        return self.store

    def close(self) -> None:
        """Close the database's connections (tests, and a process that is stopping)."""
        self.database.close()


def state() -> TetherState:
    """Return the running app's TetherState."""
    return cast(TetherState, current_app.extensions["tether"])


def settings() -> ControlPlaneSettings:
    """Return the running app's settings."""
    return state().settings


def get_store() -> Store:
    """Return this request's store, over this thread's connection."""
    store = g.get("store")
    if store is None:
        store = g.store = state().thread_store()
    return cast(Store, store)


def close_store(error: BaseException | None = None) -> None:
    """End this request's use of the store: a transaction left open is rolled back."""
    store = g.pop("store", None)
    if store is not None and store.db.in_transaction:
        store.db.rollback()
