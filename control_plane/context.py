"""What a request reaches for: the app's lifetime state, its settings, this request's store.

Like flaskr's `db.py`, this is the one place that knows how the app keeps its resources: views,
the dashboard, metrics and the scheduler import from here, never from the app factory, so
`create_app` can import them all at the top.
"""

from __future__ import annotations

from typing import cast

from flask import current_app, g

from control_plane.artifacts import ArtifactStore, open_artifact_store
from control_plane.change_feed import ChangeFeed
from control_plane.keys import KeyRing
from control_plane.long_poll import ANNOUNCED_LONG_POLL_STEP, LONG_POLL_STEP, WaitRoom
from control_plane.manifest_cache import ManifestCache
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store
from control_plane.store.db import open_database
from control_plane.store.environments import DESIRED_CHANGED


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
        self.manifests = ManifestCache()
        # Replicas hear each other's changes; one machine's workers look every step.
        self.change_feed = (
            ChangeFeed(settings.listen_url, DESIRED_CHANGED, self.wait_room.wake)
            if settings.replicated
            else None
        )
        self.new_admin_token: str | None = None

    def long_poll_step(self) -> float:
        """Seconds a held long-poll sleeps between looks at its revision."""
        feed = self.change_feed
        if feed is None:
            return LONG_POLL_STEP
        feed.ensure_running()
        return ANNOUNCED_LONG_POLL_STEP if feed.listening else LONG_POLL_STEP

    def thread_store(self) -> Store:
        """Return the store: one for the app, safe to share between its threads."""
        return self.store

    def close(self) -> None:
        """Close the database's connections (tests, and a process that is stopping)."""
        if self.change_feed is not None:
            self.change_feed.stop()
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
