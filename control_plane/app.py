"""The Flask application factory."""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

from flask import Flask, Request, current_app, g

from common.config import load_settings
from common.digests import HashingWriter
from control_plane.artifacts import ArtifactFiles
from control_plane.bootstrap import bootstrap, session_key
from control_plane.errors import register_error_handlers
from control_plane.keys import KeyRing
from control_plane.long_poll import WaitRoom
from control_plane.settings import ControlPlaneSettings
from control_plane.store import Store
from control_plane.store.db import ConnectionPool

log = logging.getLogger("tether.control_plane")


class TetherState:
    """What the app holds for its lifetime: settings, connections, artifact files."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(settings.database_path)
        self.artifacts = ArtifactFiles(settings.artifacts_dir)
        self.keys = KeyRing(settings.keys_dir)
        self.wait_room = WaitRoom(settings.long_poll_capacity)
        self.new_admin_token: str | None = None
        self._stores = threading.local()

    def thread_store(self) -> Store:
        """Return this thread's Store: built once per connection, not once per request."""
        db = self.pool.get()
        store = getattr(self._stores, "store", None)
        if store is None or store.db is not db:  # first use, or the pool was reopened
            store = self._stores.store = Store.over(db)
        return store


class TetherRequest(Request):
    """A request whose file uploads are written to the artifact store and hashed on the way."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):  # type: ignore[no-untyped-def]
        upload = state().artifacts.open_incoming()
        g.setdefault("uploads", []).append(upload)
        return upload


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings from defaults, file, environment and `config`, then the rest."""
    config = dict(config or {})
    config_file = config.pop("config_file", None)
    settings = load_settings(ControlPlaneSettings, config_file, overrides=config)

    app = Flask(__name__)
    app.request_class = TetherRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    tether = TetherState(settings)
    tether.new_admin_token = bootstrap(settings)
    app.extensions["tether"] = tether
    app.secret_key = session_key(settings.session_key_path)

    from control_plane.api import register_blueprints
    from control_plane.dashboard import init_dashboard
    from control_plane.metrics import init_metrics

    init_metrics(app)  # first, so that its timing hooks wrap every other hook
    register_blueprints(app)
    init_dashboard(app)
    register_error_handlers(app)
    app.teardown_appcontext(_close_request)
    from control_plane.poll_shortcut import UnchangedManifestShortcut

    app.wsgi_app = UnchangedManifestShortcut(  # type: ignore[method-assign]
        app.wsgi_app, tether, app.extensions["tether_metrics"]
    )
    return app


def state() -> TetherState:
    """Return the running app's TetherState."""
    return cast(TetherState, current_app.extensions["tether"])


def settings() -> ControlPlaneSettings:
    return state().settings


def get_store() -> Store:
    """Return this request's store, over this thread's connection."""
    store = g.get("store")
    if store is None:
        store = g.store = state().thread_store()
    return cast(Store, store)


def _close_request(error: BaseException | None) -> None:
    store = g.pop("store", None)
    if store is not None and store.db.conn.in_transaction:
        store.db.conn.rollback()
    # An upload that did not become a version (refused, too large, cut off) leaves no file.
    uploads: list[HashingWriter] = g.pop("uploads", [])
    kept = g.pop("kept_uploads", set())
    for upload in uploads:
        if id(upload) not in kept:
            ArtifactFiles.discard(upload)
